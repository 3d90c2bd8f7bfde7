//! What an upload must pass: compiles, links to its world, stays within the
//! sandbox's declared limits, and answers a smoke call on a sample input.

use std::sync::Arc;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::convert;
use crate::limits;
use commerce_app::extensions::{HookContext, PluginKind, Quote};
use commerce_domain::{Currency, OrderLine, OrderStatus, Quantity, Sku};

use super::*;
use calls::Mode;

impl PluginRuntime {
    /// Compiles and links a candidate, then smoke-calls it on a sample
    /// input: what an upload must pass, with the operator's limits.
    pub async fn try_component(
        &self,
        kind: PluginKind,
        name: &str,
        bytes: Arc<Vec<u8>>,
        config: &str,
    ) -> Result<(), CheckError> {
        self.try_component_within(kind, name, bytes, config, PluginLimits::default())
            .await
    }

    /// [`Self::try_component`] within the limits set at install.
    pub async fn try_component_within(
        &self,
        kind: PluginKind,
        name: &str,
        bytes: Arc<Vec<u8>>,
        config: &str,
        limits: PluginLimits,
    ) -> Result<(), CheckError> {
        let runtime = self.self_arc();
        let (name, config) = (name.to_owned(), config.to_owned());
        tokio::task::spawn_blocking(move || runtime.check_sync(kind, &name, bytes, &config, limits))
            .await
            .map_err(|e| CheckError::Compile(format!("the check did not finish: {e}")))?
    }

    pub(super) fn check_sync(
        &self,
        kind: PluginKind,
        name: &str,
        bytes: Arc<Vec<u8>>,
        config: &str,
        limits: PluginLimits,
    ) -> Result<(), CheckError> {
        let limits = self.resolve(limits);
        let sha256 = hex::encode(Sha256::digest(bytes.as_slice()));
        let component = self
            .component(&sha256, || Some(bytes))
            .map_err(CheckError::Compile)?;
        limits::check(&self.engine, &component, &self.upload_limits(limits.memory))
            .map_err(CheckError::Limits)?;
        let linked = self.link(kind, &component).map_err(CheckError::Link)?;
        let candidate = Loaded {
            name: name.to_owned(),
            version: 0,
            sha256,
            kind,
            config: Arc::from(config),
            listen: None,
            limits,
            linked,
        };
        let quote = sample_quote();
        let smoke = match kind {
            PluginKind::Pricing => self
                .call_pricing(&candidate, &convert::cart(&quote), Mode::Dry)
                .map(|_| ()),
            PluginKind::Validation => self
                .call_validation(
                    &candidate,
                    &convert::order(&quote, Decimal::new(2500, 2)),
                    Mode::Dry,
                )
                .map(|_| ()),
            PluginKind::SagaHook => {
                let context = HookContext {
                    saga_type: "order-fulfilment".into(),
                    step: "authorize-payment".into(),
                    before: true,
                    quote,
                    adjustments: vec![],
                };
                self.call_hook(
                    &candidate,
                    &convert::step_context(&context, Decimal::new(2500, 2)),
                    Mode::Dry,
                )
                .map(|_| ())
            }
        };
        smoke.map_err(CheckError::Smoke)
    }
}

/// A small order to smoke-test plugins with.
fn sample_quote() -> Quote {
    Quote {
        order_id: Uuid::nil(),
        customer_id: Uuid::nil(),
        status: OrderStatus::Pending,
        currency: Currency::parse("EUR").expect("EUR"),
        lines: vec![OrderLine {
            sku: Sku::parse("SAMPLE-1").expect("sku"),
            name: "Sample".into(),
            quantity: Quantity::parse(2).expect("quantity"),
            unit_price: Decimal::new(1250, 2),
        }],
    }
}

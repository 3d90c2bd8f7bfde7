//! Reading what the check compares over HTTP, through the public API (with
//! an admin token) and the payment simulator's ledger, the same way for an
//! in-process and a remote service.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{OpenSaga, OrderState, ProductState};
use commerce_payment_sim::LedgerEntry;

/// How to read the service and the simulator.
pub struct Reader<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a str,
    pub payment_sim: &'a str,
    /// `Bearer <admin token>`.
    pub admin: &'a str,
}

impl Reader<'_> {
    async fn get<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        let response = self
            .client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.admin)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("GET {url}: {status} {body}");
        }
        response
            .json()
            .await
            .with_context(|| format!("GET {url}: unexpected body"))
    }

    /// Sagas running, compensating or needing attention (of `orders`, or
    /// all of them when `orders` is `None`).
    pub async fn open_sagas(
        &self,
        orders: Option<&HashSet<Uuid>>,
    ) -> anyhow::Result<Vec<OpenSaga>> {
        #[derive(serde::Deserialize)]
        struct Page {
            items: Vec<OpenSaga>,
            next_cursor: Option<Uuid>,
        }
        let mut open = Vec::new();
        for status in ["running", "compensating", "needs_attention"] {
            let mut cursor: Option<Uuid> = None;
            loop {
                let mut url = format!("{}/v1/sagas?status={status}&limit=500", self.base);
                if let Some(c) = cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let page: Page = self.get(&url).await?;
                open.extend(
                    page.items
                        .into_iter()
                        .filter(|s| orders.is_none_or(|o| o.contains(&s.correlation_id))),
                );
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        Ok(open)
    }

    /// Every order with a line on `skus`, newest first, down to those
    /// created before `since` (order ids are time-ordered, and the list
    /// is by id, newest first).
    pub async fn orders(
        &self,
        skus: &BTreeMap<String, i64>,
        since: DateTime<Utc>,
    ) -> anyhow::Result<Vec<OrderState>> {
        #[derive(serde::Deserialize)]
        struct Page {
            items: Vec<OrderState>,
            next_cursor: Option<String>,
        }
        let mut orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/orders?limit=100", self.base);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Page = self.get(&url).await?;
            let older = page.items.last().is_some_and(|o| o.created_at < since);
            orders.extend(
                page.items
                    .into_iter()
                    .filter(|o| o.items.iter().any(|l| skus.contains_key(&l.sku))),
            );
            match page.next_cursor {
                Some(c) if !older => cursor = Some(c),
                _ => break,
            }
        }
        Ok(orders)
    }

    /// The products of `skus`, a few requests at a time.
    pub async fn products(
        &self,
        skus: &BTreeMap<String, i64>,
    ) -> anyhow::Result<BTreeMap<String, ProductState>> {
        let skus: Vec<&String> = skus.keys().collect();
        let mut products = BTreeMap::new();
        for chunk in skus.chunks(32) {
            let mut tasks = tokio::task::JoinSet::new();
            for sku in chunk {
                let url = format!("{}/v1/products/{sku}", self.base);
                let request = self
                    .client
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, self.admin);
                tasks.spawn(async move {
                    let response = request.send().await.with_context(|| format!("GET {url}"))?;
                    match response.status() {
                        reqwest::StatusCode::NOT_FOUND => anyhow::Ok(None),
                        s if s.is_success() => Ok(Some(response.json::<ProductState>().await?)),
                        s => anyhow::bail!("GET {url}: {s}"),
                    }
                });
            }
            while let Some(result) = tasks.join_next().await {
                if let Some(p) = result?? {
                    products.insert(p.sku.clone(), p);
                }
            }
        }
        Ok(products)
    }

    /// The simulator's ledger.
    pub async fn ledger(&self) -> anyhow::Result<Vec<LedgerEntry>> {
        self.get(&format!("{}/v1/ledger", self.payment_sim)).await
    }
}

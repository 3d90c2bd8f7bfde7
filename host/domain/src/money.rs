//! Money: ISO-4217 currencies and decimal amounts.
//!
//! Amounts are `rust_decimal::Decimal`, never floats. An amount is always
//! held at the scale of its currency's minor unit (`12.5` EUR is stored as
//! `12.50`), so that two equal amounts print the same way in JSON, in the
//! database and in a replayed read model. JSON carries amounts as decimal
//! strings (`"19.99"`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest unit price or order total we accept: far above any real
/// basket, far below where `Decimal` arithmetic could overflow.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0); // 1_000_000_000_000

/// Currencies the service accepts, with the number of digits of their minor
/// unit (ISO 4217). A currency outside this list is refused at the boundary.
const CURRENCIES: &[(&str, u32)] = &[
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("INR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("USD", 2),
];

/// Why an amount or a currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unsupported currency {0:?}: expected an ISO-4217 code such as EUR or USD")]
    UnsupportedCurrency(String),
    #[error("amount {amount} has more decimals than {currency} allows ({digits})")]
    TooPrecise {
        amount: Decimal,
        currency: Currency,
        digits: u32,
    },
    #[error("amount {0} must not be negative")]
    Negative(Decimal),
    #[error("amount {0} is out of range")]
    OutOfRange(Decimal),
}

/// An ISO-4217 currency the service supports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_digits: u32,
}

impl Currency {
    /// Parses a three-letter code (case-sensitive, as ISO writes them).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|&(code, minor_digits)| Currency { code, minor_digits })
            .ok_or_else(|| MoneyError::UnsupportedCurrency(code.chars().take(16).collect()))
    }

    /// The codes of every accepted currency.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(code, _)| *code)
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Digits after the decimal point of the minor unit (2 for EUR, 0 for JPY).
    pub fn minor_digits(&self) -> u32 {
        self.minor_digits
    }

    /// Checks a non-negative amount in this currency and brings it to the
    /// currency's scale: `12.5` EUR becomes `12.50`, `12.555` EUR is refused.
    pub fn amount(&self, amount: Decimal) -> Result<Decimal, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative(amount));
        }
        if amount > MAX_AMOUNT {
            return Err(MoneyError::OutOfRange(amount));
        }
        let normalized = amount.normalize();
        if normalized.scale() > self.minor_digits {
            return Err(MoneyError::TooPrecise {
                amount,
                currency: *self,
                digits: self.minor_digits,
            });
        }
        let mut scaled = normalized;
        scaled.rescale(self.minor_digits);
        Ok(scaled)
    }

    /// Sums `unit_price * quantity` over lines, at this currency's scale.
    pub fn total<I>(&self, lines: I) -> Result<Decimal, MoneyError>
    where
        I: IntoIterator<Item = (Decimal, u32)>,
    {
        let mut total = Decimal::ZERO;
        for (unit_price, quantity) in lines {
            let line = unit_price
                .checked_mul(Decimal::from(quantity))
                .ok_or(MoneyError::OutOfRange(unit_price))?;
            total = total
                .checked_add(line)
                .ok_or(MoneyError::OutOfRange(total))?;
        }
        if total > MAX_AMOUNT {
            return Err(MoneyError::OutOfRange(total));
        }
        total.rescale(self.minor_digits);
        Ok(total)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn amounts_take_the_scale_of_the_currency() {
        assert_eq!(
            eur().amount("12.5".parse().unwrap()).unwrap().to_string(),
            "12.50"
        );
        assert_eq!(
            eur().amount("12".parse().unwrap()).unwrap().to_string(),
            "12.00"
        );
        assert_eq!(
            eur().amount("12.500".parse().unwrap()).unwrap().to_string(),
            "12.50"
        );
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(
            jpy.amount("1200".parse().unwrap()).unwrap().to_string(),
            "1200"
        );
    }

    #[test]
    fn refuses_bad_amounts_and_currencies() {
        assert!(matches!(
            eur().amount("12.555".parse().unwrap()),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            eur().amount("-1".parse().unwrap()),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            eur().amount("1000000000000.01".parse().unwrap()),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn max_amount_is_one_trillion() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000u64));
    }

    proptest! {
        /// The total of lines is exactly the sum of cents, at the currency scale.
        #[test]
        fn total_is_exact_sum_of_minor_units(lines in proptest::collection::vec((0u64..10_000_000, 1u32..1000), 0..50)) {
            let priced: Vec<(Decimal, u32)> = lines
                .iter()
                .map(|&(cents, q)| (Decimal::new(cents as i64, 2), q))
                .collect();
            let total = eur().total(priced).unwrap();
            let cents: u128 = lines.iter().map(|&(c, q)| c as u128 * q as u128).sum();
            prop_assert_eq!(total.scale(), 2);
            prop_assert_eq!(total.mantissa() as u128, cents);
        }

        /// Normalizing is idempotent and never changes the value.
        #[test]
        fn amount_preserves_value(cents in 0i64..100_000_000_000) {
            let a = Decimal::new(cents, 2);
            let once = eur().amount(a).unwrap();
            prop_assert_eq!(once, a);
            prop_assert_eq!(eur().amount(once).unwrap().to_string(), once.to_string());
        }
    }
}

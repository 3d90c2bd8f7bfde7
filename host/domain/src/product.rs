//! Products as the domain sees them: stock keeping units and quantities.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest SKU accepted.
pub const MAX_SKU_LEN: usize = 64;
/// Most units of one SKU in one order line.
pub const MAX_QUANTITY: u32 = 10_000;

/// Why a SKU or a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error(
        "invalid SKU: 1 to {MAX_SKU_LEN} characters of letters, digits, '-', '_' or '.' expected"
    )]
    InvalidSku,
    #[error("quantity must be between 1 and {MAX_QUANTITY}, got {0}")]
    InvalidQuantity(i64),
}

/// A stock keeping unit: `[A-Za-z0-9._-]{1,64}`. The restricted alphabet
/// keeps SKUs safe in URLs, Redis keys and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub fn parse(s: &str) -> Result<Self, ProductError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SKU_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Sku(s.to_owned()))
        } else {
            Err(ProductError::InvalidSku)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sku::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A positive number of units, at most [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(n: i64) -> Result<Self, ProductError> {
        if (1..=MAX_QUANTITY as i64).contains(&n) {
            Ok(Quantity(n as u32))
        } else {
            Err(ProductError::InvalidQuantity(n))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = crate::wire::whole_number(d)?;
        Quantity::parse(n).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus() {
        for good in ["A", "SKU-1", "mug_red.L", &"x".repeat(64)] {
            assert!(Sku::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(65), "a\n"] {
            assert_eq!(Sku::parse(bad), Err(ProductError::InvalidSku), "{bad:?}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert_eq!(Quantity::parse(10_000).unwrap().get(), 10_000);
        for bad in [0, -1, 10_001, i64::MIN] {
            assert!(Quantity::parse(bad).is_err());
        }
    }
}

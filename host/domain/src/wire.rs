//! How whole numbers are read from JSON. JSON Schema's `integer` is any
//! number with no fractional part, so `2.0` is a valid quantity as much
//! as `2`; a fraction (`2.5`) or a number out of range is refused.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// A whole number: `2`, or `2.0`.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(WholeNumber)
}

/// A whole number, or null when the field may be left out.
pub fn optional_whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_option(OptionalWholeNumber)
}

struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
        Ok(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
        i64::try_from(n).map_err(|_| E::custom(format!("{n} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<i64, E> {
        // 2^63 is exact in f64; every whole f64 below it fits an i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n) {
            Ok(n as i64)
        } else {
            Err(E::invalid_type(de::Unexpected::Float(n), &self))
        }
    }
}

struct OptionalWholeNumber;

impl<'de> Visitor<'de> for OptionalWholeNumber {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        whole_number(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(deserialize_with = "whole_number")]
        n: i64,
        #[serde(default, deserialize_with = "optional_whole_number")]
        m: Option<i64>,
    }

    fn n(json: &str) -> Option<(i64, Option<i64>)> {
        serde_json::from_str::<Doc>(json).ok().map(|d| (d.n, d.m))
    }

    #[test]
    fn whole_numbers_with_or_without_a_point() {
        assert_eq!(n(r#"{"n": 2}"#), Some((2, None)));
        assert_eq!(n(r#"{"n": 2.0, "m": -3.0}"#), Some((2, Some(-3))));
        assert_eq!(n(r#"{"n": -7, "m": null}"#), Some((-7, None)));
        assert_eq!(n(r#"{"n": 1e3}"#), Some((1000, None)));
        for refused in [
            r#"{"n": 2.5}"#,
            r#"{"n": "2"}"#,
            r#"{"n": 1e19}"#,
            r#"{"n": 18446744073709551615}"#,
            r#"{"n": 1, "m": 0.5}"#,
        ] {
            assert_eq!(n(refused), None, "{refused}");
        }
    }
}

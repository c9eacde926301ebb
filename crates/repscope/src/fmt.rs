//! Number formatting shared by the faces' tables and the HTML report.

/// A number with a sensible count of digits for a table.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn digits_follow_the_magnitude() {
        assert_eq!(num(12.34567), "12.346");
        assert_eq!(num(123.456), "123.5");
        assert_eq!(num(1.5e-5), "1.500e-5");
        assert_eq!(num(0.0), "0.000");
        assert_eq!(num(f64::NAN), "NaN");
    }
}

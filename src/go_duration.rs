//! Go's duration syntax (`1h30m`, `45s`, `500ms`), as DittoFS reads its config: a leaf, so
//! the renderer and the DittoFS planner both read durations the same way.

/// Seconds in a Go duration (`1h30m`, `45s`, `500ms`); `None` when it does not parse or is not positive.
pub fn seconds(text: &str) -> Option<f64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    (total > 0.0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(seconds("30s"), Some(30.0));
        assert_eq!(seconds("1m30s"), Some(90.0));
        assert_eq!(seconds("1h"), Some(3600.0));
        assert_eq!(seconds("1.5s"), Some(1.5));
        assert_eq!(seconds("30"), None, "a bare number means nanoseconds in Go: refuse it");
        assert_eq!(seconds("0s"), None);
        assert_eq!(seconds("1d"), None);
        assert_eq!(seconds(""), None);
    }
}

//! Kubernetes quantities (`10Gi`, `500M`, `1.5Gi`) as bytes, for the sizes DittoFS takes in bytes.

/// Bytes of a quantity; `None` when it is not one, is negative, or does not fit.
pub fn bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    // The fraction in exact integer arithmetic, rounded up as Kubernetes rounds a quantity.
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let fraction: u128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
    let total = whole.checked_mul(multiplier)?.checked_add((fraction * multiplier).div_ceil(scale))?;
    u64::try_from(total).ok()
}

/// A byte count as DittoFS prints one (Go's `bytesize.ByteSize.String`): `10.00GiB`, `512B`.
pub fn dittofs_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.2}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("10Gi"), Some(10 << 30));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("1024"), Some(1024));
        assert_eq!(bytes("0.1"), Some(1), "a fraction of a byte rounds up");
    }

    #[test]
    fn what_is_not_a_size() {
        for bad in ["", "Gi", "-1Gi", "10GB", "1e3", "ten", "1.2.3"] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
        assert_eq!(bytes("100Ei"), None, "does not fit in 64 bits");
    }

    #[test]
    fn sizes_print_as_dittofs_prints_them() {
        assert_eq!(dittofs_bytes(10 << 30), "10.00GiB");
        assert_eq!(dittofs_bytes(1536 << 20), "1.50GiB");
        assert_eq!(dittofs_bytes(1000), "1000B");
    }
}

//! Byte sizes for people: `10G`, `512M`, `1.5T` in, `1.5 GiB` out (powers of 1024).

/// Parses `123`, `10K`, `1.5G`, `2TiB`, `10 GB` (all powers of 1024; case-insensitive).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G, T or P)")),
    };
    let invalid = || format!("{text:?}: not a size (examples: 500M, 10G, 1.5T)");
    if number.is_empty() {
        return Err(invalid());
    }
    let bytes = if let Some((whole, frac)) = number.split_once('.') {
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let frac_value: u64 = frac.parse().map_err(|_| invalid())?;
        let scale = 10u64.pow(frac.len() as u32);
        let unit = 1u64 << shift;
        whole
            .checked_mul(unit)
            .and_then(|w| w.checked_add(frac_value.checked_mul(unit)? / scale))
    } else {
        number
            .parse::<u64>()
            .map_err(|_| invalid())?
            .checked_mul(1 << shift)
    };
    bytes.ok_or_else(|| format!("{text:?}: too large"))
}

/// Formats a byte count: `512 B`, `1.5 KiB`, `10.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("10 gib").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("2TB").unwrap(), 2 << 40);
        for bad in ["", "G", "1.2.3G", "10X", "-1", "99999999999P", "1.G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
    }
}

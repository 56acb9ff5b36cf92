//! RFC 3339 timestamps without a date-time dependency.
//!
//! Only times that name a real instant in years 0000 to 9999 are accepted,
//! so that every parsed time formats back into a four-digit year: months
//! 01-12, days that exist in that month (leap years included), hours below
//! 24, minutes and seconds below 60 (a leap second `:60` is refused, as Go's
//! `time.Parse` refuses it, so that every accepted text is one instant),
//! offsets up to ±23:59, and a UTC result within the same range.

/// 0000-01-01T00:00:00Z, the earliest time parsed or formatted.
pub const MIN_EPOCH: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z, the latest time parsed or formatted.
pub const MAX_EPOCH: i64 = 253_402_300_799;

/// Format seconds since the Unix epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parse an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into
/// seconds since the Unix epoch; fractions of a second are dropped.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    check_rfc3339(s).ok()
}

/// [`parse_rfc3339`], saying what is wrong with a refused text.
pub fn check_rfc3339(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let shape =
        || "it is not of the form YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+HH:MM".to_string();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(shape());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        match b.get(r) {
            Some(t) if t.iter().all(u8::is_ascii_digit) => {
                Ok(t.iter().fold(0, |n, &c| n * 10 + i64::from(c - b'0')))
            }
            _ => Err(shape()),
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) {
        return Err(format!("month {mo:02} does not exist"));
    }
    let last = days_in_month(y, mo);
    if !(1..=last).contains(&d) {
        return Err(format!(
            "day {d:02} does not exist: {y:04}-{mo:02} has {last} days"
        ));
    }
    if h > 23 || mi > 59 || se > 59 {
        return Err(format!(
            "{h:02}:{mi:02}:{se:02} is not a time of day (00:00:00 to 23:59:59)"
        ));
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(shape());
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(b.len() - 5..b.len() - 3)?, num(b.len() - 2..b.len())?);
            if oh > 23 || om > 59 {
                return Err(format!(
                    "offset {} is not between -23:59 and +23:59",
                    &s[s.len() - 6..]
                ));
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(shape()),
    };
    let epoch = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    if !(MIN_EPOCH..=MAX_EPOCH).contains(&epoch) {
        return Err("in UTC it falls outside the years 0000 to 9999".to_string());
    }
    Ok(epoch)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_ends_are_real_times() {
        assert_eq!(rfc3339(MIN_EPOCH), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_EPOCH), "9999-12-31T23:59:59Z");
        assert_eq!(check_rfc3339("0000-01-01T00:00:00Z"), Ok(MIN_EPOCH));
        assert_eq!(check_rfc3339("9999-12-31T23:59:59Z"), Ok(MAX_EPOCH));
        assert_eq!(
            check_rfc3339("9999-12-31T23:59:59.999+00:00"),
            Ok(MAX_EPOCH)
        );
    }

    #[test]
    fn impossible_dates_are_refused() {
        for (t, why) in [
            ("2024-02-30T00:00:00Z", "2024-02 has 29 days"),
            ("2023-02-29T00:00:00Z", "2023-02 has 28 days"),
            ("1900-02-29T00:00:00Z", "1900-02 has 28 days"),
            ("2024-04-31T00:00:00Z", "2024-04 has 30 days"),
            ("2024-01-00T00:00:00Z", "day 00"),
            ("2024-00-10T00:00:00Z", "month 00"),
            ("2024-13-10T00:00:00Z", "month 13"),
            ("2024-01-01T24:00:00Z", "time of day"),
            ("2024-01-01T23:60:00Z", "time of day"),
            ("2024-12-31T23:59:60Z", "time of day"),
            ("2024-01-01T00:00:00+24:00", "offset +24:00"),
            ("2024-01-01T00:00:00-25:00", "offset -25:00"),
            ("2024-01-01T00:00:00+01:60", "offset +01:60"),
            ("0000-01-01T00:00:00+00:01", "outside the years"),
            ("9999-12-31T23:59:59-00:01", "outside the years"),
            ("2024-01-01T00:00:00", "of the form"),
            ("2024-01-01T00:00:00.Z", "of the form"),
            ("2024-01-01T00:00:00+0100", "of the form"),
            ("2024-01-01T00:00:00Zjunk", "of the form"),
            ("+024-01-01T00:00:00Z", "of the form"),
            ("2024-01-01T00:00:00+é:00", "of the form"),
            ("2024-01-01T00:00:00éééZ", "of the form"),
            ("10000-01-01T00:00:00Z", "of the form"),
        ] {
            let err = check_rfc3339(t).expect_err(t);
            assert!(err.contains(why), "{t}: {err}");
        }
    }

    #[test]
    fn real_dates_parse() {
        assert_eq!(check_rfc3339("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        assert_eq!(check_rfc3339("2000-02-29t12:00:00z"), Ok(951_825_600));
        assert_eq!(
            check_rfc3339("2024-01-01 01:00:00+01:00"),
            Ok(1_704_067_200)
        );
        assert_eq!(
            check_rfc3339("2023-12-31T23:00:00-01:00"),
            Ok(1_704_067_200)
        );
        assert_eq!(
            check_rfc3339("2024-01-01T00:00:00+23:59"),
            Ok(1_703_980_860)
        );
        assert_eq!(check_rfc3339("1969-12-31T23:59:59Z"), Ok(-1));
        for e in [MIN_EPOCH, -1, 0, 951_825_600, 1_700_000_000, MAX_EPOCH] {
            assert_eq!(check_rfc3339(&rfc3339(e)), Ok(e));
        }
    }
}

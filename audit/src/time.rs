//! Calendar arithmetic for event times, and the time bounds of a search.
//!
//! Event times are RFC 3339 UTC with milliseconds
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`), so they compare correctly as strings.
//! [`parse_bound`] turns what an auditor types after `--since`/`--until`
//! into a string that compares correctly with them, for
//! [`verify::Query`](crate::verify::Query). The conversion between days
//! since 1970 and civil dates ([`civil_from_days`], [`days_from_civil`]) is
//! the one the event encoder uses too.

/// Why a time bound cannot be used; its text says what was wrong and
/// which forms are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reason}; use RFC 3339 (`2026-11-26T05:00:00+01:00`, `2026-11-26T04:00:00Z`) \
     or a UTC date prefix (`2026-11-26`, `2026-11`)"
)]
pub struct TimeBoundError {
    /// What is wrong, e.g. `bad month`.
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> TimeBoundError {
    TimeBoundError { reason }
}

/// Turns a search bound into a string that compares correctly with event
/// times (`YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC):
/// - a date or date prefix (`2026`, `2026-11`, `2026-11-26`) is kept as a
///   UTC prefix;
/// - a date and time (`2026-11-26T05:00`, seconds and fraction optional,
///   `Z`, `±HH:MM` or no offset for UTC) is converted to UTC and written in
///   full with milliseconds (finer fractions are cut).
///
/// A full time with `Z` but no fraction is written with `.000Z`, so it does
/// not exclude the events within that second (`.123Z` sorts before `Z`).
pub fn parse_bound(s: &str) -> Result<String, TimeBoundError> {
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (year, month, day) = parse_date(date)?;
    let Some(time) = time else {
        return Ok(date.to_owned());
    };
    let (Some(month), Some(day)) = (month, day) else {
        return Err(bad("a time needs a full date"));
    };
    let clock = parse_clock(time)?;
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400
        + i64::from(clock.hour) * 3600
        + i64::from(clock.minute) * 60
        + i64::from(clock.second)
        - clock.offset_min * 60;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(bad("the year is out of range"));
    }
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        clock.millis
    ))
}

/// A decimal number of ASCII digits only, within `lo..=hi`.
fn num(t: &str, lo: u32, hi: u32) -> Option<u32> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok().filter(|v| (lo..=hi).contains(v))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, each field checked (the day against
/// its month).
fn parse_date(date: &str) -> Result<(u32, Option<u32>, Option<u32>), TimeBoundError> {
    let mut d = date.split('-');
    let year = d
        .next()
        .filter(|y| y.len() == 4)
        .and_then(|y| num(y, 0, 9999))
        .ok_or_else(|| bad("the year must have 4 digits"))?;
    let month = d
        .next()
        .map(|m| {
            num(m, 1, 12)
                .filter(|_| m.len() == 2)
                .ok_or_else(|| bad("bad month"))
        })
        .transpose()?;
    let day = d
        .next()
        .map(|x| {
            month
                .and_then(|m| num(x, 1, days_in_month(year, m)))
                .filter(|_| x.len() == 2)
                .ok_or_else(|| bad("bad day"))
        })
        .transpose()?;
    if d.next().is_some() {
        return Err(bad("too many date fields"));
    }
    Ok((year, month, day))
}

/// The time of day of a bound and its offset from UTC.
struct Clock {
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
    /// Minutes east of UTC.
    offset_min: i64,
}

/// `HH:MM[:SS[.fff]]` followed by `Z`, `±HH:MM` or nothing (UTC).
fn parse_clock(time: &str) -> Result<Clock, TimeBoundError> {
    let (clock, offset_min) = split_offset(time)?;
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let field = |x: Option<&str>, hi: u32, what: &'static str| {
        x.filter(|v| v.len() == 2)
            .and_then(|v| num(v, 0, hi))
            .ok_or_else(|| bad(what))
    };
    let hour = field(t.next(), 23, "bad hour")?;
    let minute = field(t.next(), 59, "bad minute")?;
    let second = match t.next() {
        Some(x) => field(Some(x), 60, "bad second")?,
        None => 0,
    };
    if t.next().is_some() {
        return Err(bad("too many time fields"));
    }
    let millis = match frac {
        None => 0,
        Some(f) => parse_millis(f)?,
    };
    Ok(Clock {
        hour,
        minute,
        second,
        millis,
        offset_min,
    })
}

/// Splits `Z`, `z` or `±HH:MM` off the end; returns the rest and the
/// offset in minutes.
fn split_offset(time: &str) -> Result<(&str, i64), TimeBoundError> {
    if let Some(c) = time.strip_suffix(['Z', 'z']) {
        return Ok((c, 0));
    }
    let Some(i) = time.rfind(['+', '-']) else {
        return Ok((time, 0));
    };
    let (c, off) = time.split_at(i);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let (h, m) = off[1..]
        .split_once(':')
        .ok_or_else(|| bad("the offset must be ±HH:MM"))?;
    let h = num(h, 0, 23).ok_or_else(|| bad("bad offset hours"))?;
    let m = num(m, 0, 59).ok_or_else(|| bad("bad offset minutes"))?;
    Ok((c, sign * i64::from(h * 60 + m)))
}

/// The digits after the decimal point, cut or padded to milliseconds.
fn parse_millis(f: &str) -> Result<u32, TimeBoundError> {
    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("bad fraction of a second"));
    }
    let mut ms = f.to_owned();
    ms.truncate(3);
    while ms.len() < 3 {
        ms.push('0');
    }
    num(&ms, 0, 999).ok_or_else(|| bad("bad fraction of a second"))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day since 1970-01-01; the
/// inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
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
    fn times_compare_like_event_times() {
        let t = |s| parse_bound(s).unwrap();
        assert_eq!(t("2026"), "2026");
        assert_eq!(t("2026-11"), "2026-11");
        assert_eq!(t("2026-11-26"), "2026-11-26");
        assert_eq!(t("2026-11-26T05:00"), "2026-11-26T05:00:00.000Z");
        assert_eq!(t("2026-11-26T05:00:00Z"), "2026-11-26T05:00:00.000Z");
        assert_eq!(t("2026-11-26t05:00:00.5z"), "2026-11-26T05:00:00.500Z");
        assert_eq!(t("2026-11-26T05:00:00.123456Z"), "2026-11-26T05:00:00.123Z");
        // Local time is converted, across a day and a year boundary.
        assert_eq!(t("2026-11-26T05:00:00+01:00"), "2026-11-26T04:00:00.000Z");
        assert_eq!(t("2027-01-01T00:30:00+01:00"), "2026-12-31T23:30:00.000Z");
        assert_eq!(t("2024-02-28T23:00:00-01:30"), "2024-02-29T00:30:00.000Z");
        // A full time with `Z` but no milliseconds must not exclude events
        // in that second: ".123Z" sorts before "Z".
        assert!("2026-11-26T05:00:00.123Z" >= t("2026-11-26T05:00:00Z").as_str());
        for bad in [
            "",
            "26-11-2026",
            "2026-13",
            "2026-02-30",
            "2026-11-26T25:00",
            "2026-11-26T05",
            "2026-11-26T05:00+1",
            "2026-11T05:00",
            "yesterday",
            "2026-11-26T05:00:00.Z",
        ] {
            assert!(parse_bound(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_problem_and_the_forms() {
        let e = parse_bound("2026-13").unwrap_err();
        assert_eq!(e.reason, "bad month");
        assert!(e.to_string().starts_with("bad month; use RFC 3339"), "{e}");
        assert_eq!(
            parse_bound("9999-12-31T23:00:00-02:00").unwrap_err().reason,
            "the year is out of range"
        );
    }

    #[test]
    fn leap_years() {
        assert!(parse_bound("2024-02-29").is_ok());
        assert!(parse_bound("2000-02-29").is_ok());
        assert!(parse_bound("1900-02-29").is_err());
        assert!(parse_bound("2026-02-29").is_err());
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1_000_000i64, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m as u32, d as u32), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
    }
}

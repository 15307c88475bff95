//! Parsing of the DICOM date and time value representations (DA, TM, DT)
//! into chrono values.
//!
//! Only what the SUV rules need: a time of day with a fraction of a second, a
//! calendar date, and a combined date-time. Time-zone offsets in DT values
//! (`&ZZXX`) are ignored: every time a PET series uses comes from the same
//! scanner clock, so they cancel in a decay time.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Parses a DA value `YYYYMMDD` (the retired `YYYY.MM.DD` is accepted too).
pub fn parse_da(s: &str) -> Option<NaiveDate> {
    let d: String = s
        .trim()
        .chars()
        .filter(|c| *c != '.' && *c != '-')
        .collect();
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::from_ymd_opt(
        d[0..4].parse().ok()?,
        d[4..6].parse().ok()?,
        d[6..8].parse().ok()?,
    )
}

/// Parses a TM value `HH[MM[SS[.F{1,6}]]]` (the retired `HH:MM:SS` is accepted too).
pub fn parse_tm(s: &str) -> Option<NaiveTime> {
    let t: String = s.trim().chars().filter(|c| *c != ':').collect();
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w.to_string(), f.to_string()),
        None => (t.clone(), String::new()),
    };
    if whole.is_empty() || whole.len() % 2 != 0 || whole.len() > 6 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 6 || (!frac.is_empty() && whole.len() != 6) {
        return None;
    }
    let field = |i: usize| -> u32 {
        whole
            .get(2 * i..2 * i + 2)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0)
    };
    let micros: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    // DICOM allows a leap second (SS = 60); chrono represents it as 59 s + 1e6 µs.
    let (sec, micros) = if field(2) == 60 {
        (59, 1_000_000 + micros)
    } else {
        (field(2), micros)
    };
    NaiveTime::from_hms_micro_opt(field(0), field(1), sec, micros)
}

/// Parses a DT value `YYYYMMDDHH[MM[SS[.F{1,6}]]][&ZZXX]`; the offset is ignored.
pub fn parse_dt(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    // Strip a trailing UTC offset (+HHMM or -HHMM after the date part).
    let core = match s.get(8..).and_then(|rest| rest.find(['+', '-'])) {
        Some(pos) => &s[..8 + pos],
        None => s,
    };
    if core.len() < 10 {
        return None;
    }
    let date = parse_da(core.get(0..8)?)?;
    let time = parse_tm(core.get(8..)?)?;
    Some(NaiveDateTime::new(date, time))
}

/// Formats a date-time as ISO 8601 with microseconds, for reports.
pub fn iso(dt: &NaiveDateTime) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dicom_date_time_forms() {
        assert_eq!(parse_da("20261128"), NaiveDate::from_ymd_opt(2026, 11, 28));
        assert_eq!(
            parse_da("2026.11.28"),
            NaiveDate::from_ymd_opt(2026, 11, 28)
        );
        assert_eq!(parse_da("2026112"), None);
        assert_eq!(parse_da("20261332"), None);
        assert_eq!(
            parse_tm("101530.25"),
            NaiveTime::from_hms_micro_opt(10, 15, 30, 250_000)
        );
        assert_eq!(parse_tm("10:15:30"), NaiveTime::from_hms_opt(10, 15, 30));
        assert_eq!(parse_tm("1015"), NaiveTime::from_hms_opt(10, 15, 0));
        assert_eq!(parse_tm("09"), NaiveTime::from_hms_opt(9, 0, 0));
        assert_eq!(parse_tm("10153"), None);
        assert_eq!(parse_tm("251530"), None);
        assert_eq!(parse_tm("abc"), None);
        assert_eq!(
            parse_dt("20261128091500.5+0100"),
            Some(NaiveDateTime::new(
                NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
                NaiveTime::from_hms_micro_opt(9, 15, 0, 500_000).unwrap()
            ))
        );
        assert_eq!(
            parse_dt("202611280915").map(|d| iso(&d)).as_deref(),
            Some("2026-11-28T09:15:00.000000")
        );
        assert_eq!(parse_dt("20261128"), None);
    }
}

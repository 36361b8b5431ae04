//! The time of verification, which every check takes as an input and never reads from a clock.
//! [`UnixTime::now`] is the one reading of the system clock in confide, for the edges (the
//! server's handlers, the command line) to pass in; nothing in this crate calls it.

use std::fmt;

use crate::AttestError;

/// A point in time, in whole seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(i64);

impl UnixTime {
    /// The time `seconds` after the epoch.
    pub const fn from_secs(seconds: i64) -> Self {
        Self(seconds)
    }

    /// The system clock, at whole seconds: for the callers of verifications, never called by
    /// one. A clock before 1970 reads as the epoch, one past `i64` seconds as the end of time;
    /// either fails every validity window rather than passing one.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self(secs)
    }

    /// Seconds since the epoch.
    pub const fn secs(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 timestamp such as `2025-06-01T00:00:00Z`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, AttestError> {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| AttestError::malformed(format!("timestamp {text:?} ({e})")))?;
        Ok(Self(t.unix_timestamp()))
    }

    /// Checks `from <= self <= to`, naming `what` if not. Both ends are inclusive, as RFC 5280
    /// defines certificate validity.
    pub(crate) fn check_within(
        self,
        what: &str,
        from: UnixTime,
        to: UnixTime,
    ) -> Result<(), AttestError> {
        if from <= self && self <= to {
            Ok(())
        } else {
            Err(AttestError::NotValidAtTime {
                what: what.to_owned(),
                at: self.to_string(),
                from: from.to_string(),
                to: to.to_string(),
            })
        }
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 in UTC, or the raw seconds if the time is out of the calendar's range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }) {
            Some(text) => f.write_str(&text),
            None => write!(f, "{}s after the epoch", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_rfc3339() {
        let t = UnixTime::parse_rfc3339("2025-06-01T00:00:00Z").unwrap();
        assert_eq!(t.secs(), 1_748_736_000);
        assert_eq!(t.to_string(), "2025-06-01T00:00:00Z");
        assert!(UnixTime::parse_rfc3339("2025-06-01").is_err());
    }

    #[test]
    fn windows_include_both_ends() {
        let (a, b) = (UnixTime::from_secs(10), UnixTime::from_secs(20));
        assert!(UnixTime::from_secs(10).check_within("x", a, b).is_ok());
        assert!(UnixTime::from_secs(20).check_within("x", a, b).is_ok());
        let err = UnixTime::from_secs(21).check_within("x", a, b).unwrap_err();
        assert_eq!(err.reason_code(), crate::ReasonCode::NotValidAtTime);
        assert!(UnixTime::from_secs(9).check_within("x", a, b).is_err());
    }
}

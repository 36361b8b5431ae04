//! Contracts: what the owners of the named datasets agree to run, byte for byte.
//!
//! A contract names its tables (SQL table name → dataset id), the SQL text, the workload
//! measurements allowed to run it, the recipients of the result (member fingerprints) and the
//! output rules. Its id is the SHA-256 of its RFC 8785 canonical JSON, so any change — one byte
//! of the SQL, one more recipient — makes another contract, which needs its own approvals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use confide_attest::TeeKind;

use crate::{ContractId, DatasetId, MemberId, ModelError};

/// A workload's measurement, as a contract allows it and governance trusts it: a TEE kind that
/// measures its code and that kind's primary measurement (defined once, in `confide_attest`),
/// of its length. A value of this type has been checked; on the wire it is
/// `{"kind": "sev-snp", "value": "<lowercase hex>"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Measurement {
    kind: TeeKind,
    bytes: Vec<u8>,
}

/// A measurement as the wire carries it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMeasurement {
    kind: String,
    value: String,
}

impl Measurement {
    /// `bytes` as the primary measurement of `kind`: refused for a kind that measures nothing
    /// (`sample`, a GPU) or for bytes of another length.
    pub fn new(kind: TeeKind, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let (claim, len) = kind
            .primary_measurement()
            .ok_or_else(|| ModelError::Malformed {
                field: "measurements",
                detail: format!(
                    "measurement kind {:?} is not a TEE kind that measures its code",
                    kind.as_str()
                ),
            })?;
        if bytes.len() != len {
            return Err(ModelError::Malformed {
                field: "measurements",
                detail: format!(
                    "measurement {}:{}: its {claim} is {len} bytes, not {}",
                    kind.as_str(),
                    hex::encode(&bytes),
                    bytes.len()
                ),
            });
        }
        Ok(Self { kind, bytes })
    }

    /// A measurement as text: the kind's name and lowercase hex of its length.
    pub fn parse(kind: &str, value: &str) -> Result<Self, ModelError> {
        let tee = TeeKind::from_name(kind).ok_or_else(|| ModelError::Malformed {
            field: "measurements",
            detail: format!("measurement kind {kind:?} is not a TEE kind that measures its code"),
        })?;
        let hex_ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let bytes = hex_ok
            .then(|| hex::decode(value).ok())
            .flatten()
            .ok_or_else(|| {
                let len = tee.primary_measurement().map_or(0, |(_, len)| len);
                ModelError::Malformed {
                    field: "measurements",
                    detail: format!(
                        "measurement {kind}:{value:?}: {len} bytes of lowercase hex expected"
                    ),
                }
            })?;
        Self::new(tee, bytes)
    }

    /// The TEE kind.
    pub fn kind(&self) -> TeeKind {
        self.kind
    }

    /// The measurement's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The measurement as lowercase hex, as the wire and the tokens carry it.
    pub fn hex(&self) -> String {
        hex::encode(&self.bytes)
    }
}

impl std::fmt::Display for Measurement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.hex())
    }
}

impl Serialize for Measurement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireMeasurement {
            kind: self.kind.as_str().to_owned(),
            value: self.hex(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Measurement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = WireMeasurement::deserialize(d)?;
        Self::parse(&wire.kind, &wire.value).map_err(serde::de::Error::custom)
    }
}

/// What happens to result rows that break the minimum group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// Leave those rows out, and say how many.
    Suppress,
    /// Release no result at all.
    Refuse,
}

/// A result column that the contract's own SQL computes to count the individuals behind each
/// row, and its minimum: how contracts were written before the engine counted individuals
/// itself. It is still read, so that a ledger holding such a contract replays, but no longer
/// trusted: a contract that has no [`AnalysisRule`] does not run (the SQL could make the count
/// any constant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinGroup {
    /// The column holding the count of distinct individuals.
    pub column: String,
    /// The least count a row may have.
    pub min: u64,
}

/// How the engine itself counts the individuals behind each result row — from the identity
/// columns the datasets' owners declared, followed through the query's plan — and the least
/// count a row may have. On the wire `{"aggregation": {"min_identities": 5}}` or
/// `{"list": {"min_identities": 3}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AnalysisRule {
    /// The result is an aggregate (`GROUP BY`) over columns that may be dimensions, computed with
    /// COUNT, SUM or AVG of plain columns; in each group, every declared identity column of every
    /// table read has no identified row or at least `min_identities` distinct values.
    Aggregation {
        /// The least number of distinct individuals per table behind a group.
        min_identities: u64,
    },
    /// The result lists rows matched across the datasets (findings, overlaps), which may name
    /// an individual; each row is backed by at least `min_identities` distinct values of each
    /// identity domain that reaches it.
    List {
        /// The least number of distinct individuals per domain behind a row.
        min_identities: u64,
    },
}

impl AnalysisRule {
    /// The least number of distinct individuals.
    pub fn min_identities(self) -> u64 {
        match self {
            Self::Aggregation { min_identities } | Self::List { min_identities } => min_identities,
        }
    }

    /// `aggregation` or `list`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aggregation { .. } => "aggregation",
            Self::List { .. } => "list",
        }
    }
}

/// The rules a result must meet to leave the TEE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRules {
    /// The only columns that may leave.
    pub columns: Vec<String>,
    /// How the engine counts the individuals behind each row. Required of every new contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<AnalysisRule>,
    /// A count the SQL computes: read from older ledgers, never trusted (see [`MinGroup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_group: Option<MinGroup>,
    /// The noise each run adds, and the ε it spends (aggregation rule only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<crate::Noise>,
    /// The most rows the result may have.
    pub max_rows: u64,
    /// What to do with rows under the minimum group size.
    pub on_violation: OnViolation,
}

impl Contract {
    /// Which versions of its dataset table `table` reads.
    pub fn versions_of(&self, table: &str) -> Versions {
        self.versions.get(table).copied().unwrap_or_default()
    }
}

/// A contract's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// SQL table name → dataset id.
    pub tables: BTreeMap<String, DatasetId>,
    /// The SQL query, byte for byte.
    pub sql: String,
    /// The measurements of the workloads allowed to run it.
    pub measurements: Vec<Measurement>,
    /// The members the result is encrypted to.
    pub recipients: Vec<MemberId>,
    /// The output rules.
    pub output: OutputRules,
    /// Which versions of its dataset a table reads, by table name (all of them for a table
    /// not named).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, Versions>,
}

/// Which versions of a growing dataset a contract reads ([`crate::dataset::DatasetVersion`]):
/// every one, the latest at the run, or those the ledger accepted in a time window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Versions {
    /// Every version: the dataset as it stands at the run.
    #[default]
    All,
    /// The latest version only (a day's batch, say).
    Latest,
    /// The versions accepted from `from` (inclusive) to `until` (exclusive), Unix seconds.
    Window {
        /// The window's start.
        from: i64,
        /// Its end.
        until: i64,
    },
}

impl Versions {
    /// The versions of `versions` (in the ledger's order) this selection reads.
    pub fn select<'a>(
        &self,
        versions: &'a [crate::dataset::DatasetVersion],
    ) -> Vec<&'a crate::dataset::DatasetVersion> {
        match *self {
            Self::All => versions.iter().collect(),
            Self::Latest => versions.last().into_iter().collect(),
            Self::Window { from, until } => versions
                .iter()
                .filter(|v| from <= v.at && v.at < until)
                .collect(),
        }
    }

    /// `all`, `latest`, or `FROM..UNTIL` in Unix seconds.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Malformed {
            field: "versions",
            detail: format!("{text:?} is not all, latest or FROM..UNTIL (Unix seconds)"),
        };
        let versions = match text {
            "all" => Self::All,
            "latest" => Self::Latest,
            _ => {
                let (from, until) = text.split_once("..").ok_or_else(bad)?;
                Self::Window {
                    from: from.trim().parse().map_err(|_| bad())?,
                    until: until.trim().parse().map_err(|_| bad())?,
                }
            }
        };
        versions.check()?;
        Ok(versions)
    }

    /// A window ends after it starts.
    pub fn check(&self) -> Result<(), ModelError> {
        match self {
            Self::Window { from, until } if from >= until => Err(ModelError::Malformed {
                field: "versions",
                detail: format!("the window {from}..{until} ends before it starts"),
            }),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Latest => f.write_str("latest"),
            Self::Window { from, until } => write!(f, "{from}..{until}"),
        }
    }
}

impl Contract {
    /// Checks the terms make sense on their own (not against the ledger); the error names the
    /// field at fault.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad =
            |field: &'static str, detail: String| Err(ModelError::Malformed { field, detail });
        if self.tables.is_empty() {
            return bad("tables", "a contract names at least one table".into());
        }
        for name in self.tables.keys() {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !ok {
                return bad(
                    "tables",
                    format!(
                        "table name {name:?}: letters, digits and '_', not starting with a digit"
                    ),
                );
            }
        }
        let mut read = std::collections::BTreeSet::new();
        if let Some(d) = self.tables.values().find(|d| !read.insert(*d)) {
            return bad(
                "tables",
                format!(
                    "dataset {d:?} is named by two tables: name it once and alias it in the SQL"
                ),
            );
        }
        if self.sql.trim().is_empty() {
            return bad("sql", "the SQL is empty".into());
        }
        if self.measurements.is_empty() {
            return bad(
                "measurements",
                "a contract allows at least one workload measurement".into(),
            );
        }
        if self.recipients.is_empty() {
            return bad(
                "recipients",
                "a contract names at least one recipient".into(),
            );
        }
        for (table, versions) in &self.versions {
            if !self.tables.contains_key(table) {
                return bad(
                    "versions",
                    format!("{table:?} is not a table of the contract"),
                );
            }
            versions.check()?;
        }
        if self.output.columns.is_empty() {
            return bad("output.columns", "the output rules allow no column".into());
        }
        match (&self.output.rule, &self.output.min_group) {
            (Some(rule), None) if rule.min_identities() < 2 => {
                return bad(
                    "output.rule",
                    format!(
                        "min_identities is {}: a row backed by one individual is that \
                         individual's data; the least minimum is 2",
                        rule.min_identities()
                    ),
                );
            }
            (Some(_), None) => {}
            (Some(_), Some(_)) => {
                return bad(
                    "output.min_group",
                    "a contract with an analysis rule has no SQL-computed count column".into(),
                );
            }
            // Read from a ledger written before analysis rules: replays, never runs.
            (None, Some(_)) => {}
            (None, None) => {
                return bad(
                    "output.rule",
                    "the output rules name no analysis rule ({\"aggregation\": \
                     {\"min_identities\": N}} or {\"list\": {\"min_identities\": N}})"
                        .into(),
                );
            }
        }
        if let Some(noise) = &self.output.noise {
            noise.check()?;
            if !matches!(self.output.rule, Some(AnalysisRule::Aggregation { .. })) {
                return bad(
                    "output.noise",
                    "noise is added to aggregates: only under the aggregation rule (a list rule \
                     releases rows as they are)"
                        .into(),
                );
            }
        }
        if self.output.max_rows == 0 {
            return bad("output.max_rows", "max_rows is 0".into());
        }
        Ok(())
    }

    /// The dataset ids, sorted, each once.
    pub fn datasets(&self) -> Vec<DatasetId> {
        let mut ids: Vec<DatasetId> = self.tables.values().cloned().collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The contract as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The contract's id: SHA-256 of its canonical JSON. The one place a contract id is
    /// computed.
    pub fn id(&self) -> ContractId {
        ContractId::of_digest(&confide_crypto::digest::sha256(
            confide_crypto::jcs::canonical_json(&self.to_value()).as_bytes(),
        ))
    }

    /// The contract from JSON (e.g. the `contract` member of a governance action), checked.
    pub fn from_value(value: &Value) -> Result<Self, ModelError> {
        let c: Self = serde_json::from_value(value.clone()).map_err(|e| ModelError::Malformed {
            field: "contract",
            detail: e.to_string(),
        })?;
        c.check()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Contract {
        Contract {
            versions: BTreeMap::new(),
            tables: [("bank_a".to_owned(), "ds-a".parse().unwrap())].into(),
            sql: "SELECT 1 AS n".into(),
            measurements: vec![Measurement::new(TeeKind::Sim, vec![0; 48]).unwrap()],
            recipients: vec!["0f".repeat(32).parse().unwrap()],
            output: OutputRules {
                noise: None,
                columns: vec!["n".into()],
                rule: Some(AnalysisRule::Aggregation { min_identities: 2 }),
                min_group: None,
                max_rows: 10,
                on_violation: OnViolation::Refuse,
            },
        }
    }

    #[test]
    fn versions_select_all_the_latest_or_a_window_and_parse_as_written() {
        use crate::dataset::{DatasetVersion, Version};
        let versions: Vec<DatasetVersion> = [100, 200, 300]
            .iter()
            .enumerate()
            .map(|(i, &at)| DatasetVersion {
                number: i as u64 + 1,
                at,
                version: Version {
                    rows: 1,
                    size: 1,
                    digest: format!("{i:02}").repeat(32),
                    location: format!("v{i}"),
                },
            })
            .collect();
        let numbers =
            |v: Versions| -> Vec<u64> { v.select(&versions).iter().map(|v| v.number).collect() };
        assert_eq!(numbers(Versions::All), [1, 2, 3]);
        assert_eq!(numbers(Versions::Latest), [3]);
        assert_eq!(numbers(Versions::parse("200..300").unwrap()), [2]);
        assert_eq!(numbers(Versions::parse("0..201").unwrap()), [1, 2]);
        assert!(numbers(Versions::parse("301..400").unwrap()).is_empty());
        assert!(Versions::Latest.select(&[]).is_empty());
        for text in ["all", "latest", "200..300"] {
            assert_eq!(Versions::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", "newest", "300..200", "5..5", "a..b", "1..", "..2"] {
            assert!(Versions::parse(bad).is_err(), "{bad}");
        }
        // The default is left out of the terms, so a contract's id is what it was before
        // versions existed; another selection is in them.
        let mut c = sample();
        assert!(!serde_json::to_string(&c).unwrap().contains("versions"));
        let before = c.id();
        c.versions.insert("bank_a".into(), Versions::Latest);
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .contains(r#""versions":{"bank_a":"latest"}"#)
        );
        assert_ne!(c.id(), before);
        assert_eq!(c.versions_of("bank_a"), Versions::Latest);
        c.check().unwrap();
        // Only a table of the contract has versions chosen.
        c.versions.insert("bank_b".into(), Versions::Latest);
        assert!(c.check().is_err());
    }

    #[test]
    fn the_id_covers_every_byte() {
        let c = sample();
        c.check().unwrap();
        let id = c.id();
        assert_eq!(id.as_str().len(), 64);
        let mut sql = c.clone();
        sql.sql.push(' ');
        let mut recipients = c.clone();
        recipients.recipients.push("1f".repeat(32).parse().unwrap());
        let mut rules = c.clone();
        rules.output.max_rows = 11;
        for other in [sql, recipients, rules] {
            assert_ne!(other.id(), id);
        }
        // The same terms in another member order: the same id.
        let reordered: Value = serde_json::from_str(&format!(
            r#"{{"output": {}, "sql": "SELECT 1 AS n", "tables": {{"bank_a": "ds-a"}}, "recipients": ["{}"], "measurements": [{{"value": "{}", "kind": "sim"}}]}}"#,
            serde_json::to_string(&c.output).unwrap(),
            "0f".repeat(32),
            "00".repeat(48)
        ))
        .unwrap();
        assert_eq!(Contract::from_value(&reordered).unwrap().id(), id);
        assert_eq!(Contract::from_value(&reordered).unwrap(), c);
    }

    #[test]
    fn nonsense_terms_are_refused() {
        let mut c = sample();
        c.output.rule = None;
        assert!(c.check().is_err());
        let mut c = sample();
        for min_identities in [0, 1] {
            c.output.rule = Some(AnalysisRule::List { min_identities });
            assert!(c.check().is_err());
        }
        // A contract of an older ledger, with only a count its SQL computes, still reads (it
        // replays; the runner refuses it); one with both is nonsense.
        let mut c = sample();
        c.output.min_group = Some(MinGroup {
            column: "n".into(),
            min: 1,
        });
        assert!(c.check().is_err());
        c.output.rule = None;
        c.check().unwrap();
        let mut c = sample();
        c.tables.insert("1bad".into(), "x".parse().unwrap());
        assert!(c.check().is_err());
        let mut c = sample();
        c.recipients.clear();
        assert!(c.check().is_err());
        // One dataset under two table names: its key would be asked for twice and its digest
        // reported twice.
        let mut c = sample();
        c.tables.insert("bank_b".into(), "ds-a".parse().unwrap());
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("named by two tables"), "{e}");
        assert!(Contract::from_value(&serde_json::json!({"sql": "x"})).is_err());
        // Measurements: an empty value, a short or long one, upper case, not hex, a kind that
        // measures nothing or does not exist.
        for (kind, value) in [
            ("sim", String::new()),
            ("sim", "00".repeat(47)),
            ("sim", "00".repeat(49)),
            ("sim", "AB".repeat(48)),
            ("sim", "zz".repeat(48)),
            ("sgx", "00".repeat(48)),
            ("sample", "00".repeat(48)),
            ("quantum", "00".repeat(48)),
        ] {
            let e = Measurement::parse(kind, &value).unwrap_err().to_string();
            assert!(e.contains("measurement"), "{kind}:{value}: {e}");
            // Nor does a contract carrying it read.
            let mut terms = sample().to_value();
            terms["measurements"] = serde_json::json!([{"kind": kind, "value": value}]);
            let e = Contract::from_value(&terms).unwrap_err().to_string();
            assert!(e.contains("measurement"), "{kind}:{value}: {e}");
        }
        // A recipient that is no fingerprint, a dataset id that is no id: the terms do not read.
        for (field, bad) in [
            ("recipients", serde_json::json!(["0F".repeat(32)])),
            ("tables", serde_json::json!({"bank_a": "../ds-a"})),
        ] {
            let mut terms = sample().to_value();
            terms[field] = bad;
            assert!(Contract::from_value(&terms).is_err(), "{field}");
        }
        let mut c = sample();
        c.measurements[0] = Measurement::parse("sgx", &"ab".repeat(32)).unwrap();
        assert_eq!(
            c.measurements[0].to_string(),
            format!("sgx:{}", "ab".repeat(32))
        );
        c.check().unwrap();
    }
}

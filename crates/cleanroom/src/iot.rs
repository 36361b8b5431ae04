//! The smart-building scenario: four parties' data about one building over some days, and the
//! contracts that compute occupancy and energy from them without exposing anyone.
//!
//! - the facility team's room sensors (`sensors`): temperature, CO2, light, the occupancy
//!   sensor and the energy drawn, per room and 5-minute interval — about no one;
//! - the security contractor's badge swipes (`swipes`): badge, door, floor, day, hour, minute —
//!   each badge an individual;
//! - the video analytics vendor's CCTV motion counts (`cctv`): per zone (one per floor) and
//!   minute — about no one;
//! - HR's register (`hr`): badge → department, the identity-bearing table that gives the
//!   swipes their department.
//!
//! Occupancy per floor, department, day and hour runs under the aggregation rule (at least
//! five distinct badges per group) with differential privacy; energy and motion per floor,
//! day and hour read only data about no one.

use std::io::Write;

use crate::Privacy;
use confide_model::contract::{AnalysisRule, OnViolation, OutputRules};
use confide_model::{Bounds, Budget, Epsilon, Noise};

/// The sensors' CSV header.
pub const SENSORS: &str =
    "room,floor,day,hour,minute,temperature_c,co2_ppm,light_lux,occupied,energy_wh";
/// The swipes' CSV header.
pub const SWIPES: &str = "badge_id,door,floor,day,hour,minute";
/// The CCTV counts' CSV header.
pub const CCTV: &str = "zone,floor,day,hour,minute,motion";
/// HR's register's CSV header.
pub const HR: &str = "badge_id,department";

/// Occupancy: distinct badges per floor, department, day and hour.
pub const OCCUPANCY_SQL: &str = "\
SELECT s.floor, h.department, s.day, s.hour, COUNT(DISTINCT s.badge_id) AS occupants
FROM swipes s JOIN hr h ON s.badge_id = h.badge_id
GROUP BY s.floor, h.department, s.day, s.hour
ORDER BY s.day, s.hour, s.floor, h.department
";

/// Energy and air per floor, day and hour, from the room sensors.
pub const ENERGY_SQL: &str = "\
SELECT floor, day, hour, SUM(energy_wh) AS energy_wh, AVG(co2_ppm) AS co2_ppm
FROM sensors GROUP BY floor, day, hour ORDER BY day, hour, floor
";

/// Motion per floor, day and hour, from the CCTV counts.
pub const MOTION_SQL: &str = "\
SELECT floor, day, hour, SUM(motion) AS motion
FROM cctv GROUP BY floor, day, hour ORDER BY day, hour, floor
";

/// The occupancy contract's rule: at least five distinct badges behind each group.
pub const RULE: AnalysisRule = AnalysisRule::Aggregation { min_identities: 5 };

/// The swipes a badge makes in a day at most (the generator's), the occupancy contract's
/// bound on each individual's rows.
pub const SWIPES_PER_DAY: u32 = 6;

/// The occupancy contract's noise: ε 1 a run, at most the swipes of each badge the data holds.
pub fn noise(days: u32) -> Noise {
    Noise {
        epsilon: Epsilon::from_micros(1_000_000),
        max_rows_per_identity: SWIPES_PER_DAY * days.max(1),
    }
}

/// The output rules of the occupancy contract.
pub fn occupancy_rules(days: u32) -> OutputRules {
    OutputRules {
        columns: ["floor", "department", "day", "hour", "occupants"]
            .map(String::from)
            .to_vec(),
        rule: Some(RULE),
        min_group: None,
        noise: Some(noise(days)),
        max_rows: 100_000,
        on_violation: OnViolation::Suppress,
    }
}

/// The output rules of the energy and motion contracts (`columns`, grouped, no one counted).
pub fn building_rules(columns: &[&str]) -> OutputRules {
    OutputRules {
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rule: Some(AnalysisRule::Aggregation { min_identities: 5 }),
        min_group: None,
        noise: None,
        max_rows: 100_000,
        on_violation: OnViolation::Suppress,
    }
}

/// What the security contractor declares: badges are individuals; ε 2 a day of budget.
pub fn swipes_privacy() -> Privacy {
    Privacy {
        identity: [("badge_id".to_owned(), "badge".to_owned())].into(),
        budget: Some(Budget {
            epsilon: Epsilon::from_micros(2_000_000),
            period_days: 1,
        }),
        ..Privacy::default()
    }
}

/// What HR declares: badges are individuals, the department only grouped by; the same budget.
pub fn hr_privacy() -> Privacy {
    swipes_privacy()
}

/// What the security contractor declares of its visitor log: visitors are individuals; no
/// budget, so only exact contracts read it, each held by the difference checks.
pub fn visitors_privacy() -> Privacy {
    Privacy {
        identity: [("visitor_id".to_owned(), "visitor".to_owned())].into(),
        ..Privacy::default()
    }
}

/// Visitors per host department, from the security contractor's visitor log: an exact
/// aggregate.
pub const VISITORS_SQL: &str = "\
SELECT department, COUNT(DISTINCT visitor_id) AS visitors FROM visitors GROUP BY department \
ORDER BY department
";

/// The visitor log of day `day`: `per_department` visitors to each department but the first,
/// which has `first` (`visitor_id,department`, with its header).
pub fn visitors(day: u32, first: u32, per_department: u32) -> String {
    let mut csv = String::from("visitor_id,department\n");
    for (d, (department, _)) in DEPARTMENTS.iter().enumerate() {
        let n = if d == 0 { first } else { per_department };
        for v in 0..n {
            csv.push_str(&format!("V{day}-{d}-{v:03},{department}\n"));
        }
    }
    csv
}

/// What the facility team and the vendor declare: rows about no one, and the bounds of what
/// may be summed.
pub fn sensors_privacy() -> Privacy {
    Privacy {
        bounds: [
            ("energy_wh".to_owned(), Bounds { lo: 0, hi: 5_000 }),
            ("co2_ppm".to_owned(), Bounds { lo: 0, hi: 5_000 }),
        ]
        .into(),
        ..Privacy::default()
    }
}

/// The same for the CCTV counts.
pub fn cctv_privacy() -> Privacy {
    Privacy {
        bounds: [("motion".to_owned(), Bounds { lo: 0, hi: 1_000 })].into(),
        ..Privacy::default()
    }
}

/// How much to generate.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Floors (one CCTV zone each).
    pub floors: u32,
    /// Rooms per floor (one sensor each).
    pub rooms_per_floor: u32,
    /// Employees (one badge each).
    pub employees: u32,
    /// Days.
    pub days: u32,
    /// The seed.
    pub seed: u64,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            floors: 4,
            rooms_per_floor: 6,
            employees: 2_000,
            days: 2,
            seed: 0x0b51_1d17_0000_0001,
        }
    }
}

/// The departments, and the floor each mostly works on.
pub const DEPARTMENTS: [(&str, u32); 5] = [
    ("engineering", 1),
    ("sales", 2),
    ("operations", 3),
    ("finance", 4),
    ("executive", 4),
];

/// The department of employee `e`: executives are few (one in four hundred), so their groups
/// fall under the minimum and are suppressed.
fn department(e: u32) -> usize {
    if e % 400 == 399 { 4 } else { (e % 4) as usize }
}

/// The four files, each written with its header.
#[allow(missing_debug_implementations)]
pub struct Outputs<'a> {
    /// Room sensors.
    pub sensors: &'a mut dyn Write,
    /// Badge swipes.
    pub swipes: &'a mut dyn Write,
    /// CCTV counts.
    pub cctv: &'a mut dyn Write,
    /// HR's register.
    pub hr: &'a mut dyn Write,
}

/// Generates the building's data: each employee comes in most days, swipes in at its floor's
/// door in the morning and a few times more during the day (at most [`SWIPES_PER_DAY`]); the
/// sensors see the rooms occupied in working hours and draw energy with it; the cameras count
/// motion in proportion. Returns the rows of sensor data written.
pub fn generate(scale: Scale, out: Outputs<'_>) -> std::io::Result<u64> {
    let mut rng = crate::SplitMix(scale.seed);
    writeln!(out.hr, "{HR}")?;
    for e in 0..scale.employees {
        writeln!(out.hr, "B{e:05},{}", DEPARTMENTS[department(e)].0)?;
    }
    writeln!(out.swipes, "{SWIPES}")?;
    // Who is on which floor in which hour, for the sensors and cameras.
    let floors = scale.floors.max(1);
    let mut present = vec![0u32; (scale.days * floors * 24) as usize];
    for day in 0..scale.days {
        for e in 0..scale.employees {
            if rng.below(10) == 0 {
                continue; // away today
            }
            let home = (DEPARTMENTS[department(e)].1 - 1) % floors;
            let arrive = 7 + rng.below(3) as u32;
            let leave = 16 + rng.below(3) as u32;
            let swipes = 2 + rng.below(u64::from(SWIPES_PER_DAY) - 1) as u32;
            for k in 0..swipes {
                let hour = arrive + (k * (leave - arrive)) / swipes;
                let floor = if k == 0 || rng.below(4) != 0 {
                    home
                } else {
                    rng.below(u64::from(floors)) as u32
                };
                let door = format!("F{}D{}", floor + 1, rng.below(3) + 1);
                writeln!(
                    out.swipes,
                    "B{e:05},{door},{},{day},{hour},{}",
                    floor + 1,
                    rng.below(60)
                )?;
            }
            for hour in arrive..leave {
                present[((day * floors + home) * 24 + hour) as usize] += 1;
            }
        }
    }
    writeln!(out.sensors, "{SENSORS}")?;
    writeln!(out.cctv, "{CCTV}")?;
    let mut rows = 0u64;
    let per_room = f64::from(scale.employees) / f64::from(floors * scale.rooms_per_floor.max(1));
    for day in 0..scale.days {
        for floor in 0..floors {
            for hour in 0..24u32 {
                let people = present[((day * floors + floor) * 24 + hour) as usize];
                let share = f64::from(people) / per_room.max(1.0) / f64::from(floors);
                for room in 0..scale.rooms_per_floor {
                    for minute in (0..60).step_by(5) {
                        let occupied = u8::from(people > 0 && rng.below(10) < 8);
                        let temp = 19.5 + 2.0 * share + rng.below(10) as f64 / 10.0;
                        let co2 = 420 + (300.0 * share) as u64 + rng.below(40);
                        let light = if occupied == 1 {
                            300 + rng.below(200)
                        } else {
                            rng.below(20)
                        };
                        let energy = 40 + (120.0 * share) as u64 + rng.below(20);
                        writeln!(
                            out.sensors,
                            "F{}R{},{},{day},{hour},{minute},{temp:.1},{co2},{light},{occupied},{energy}",
                            floor + 1,
                            room + 1,
                            floor + 1
                        )?;
                        rows += 1;
                    }
                }
                for minute in 0..60 {
                    let motion = people.min(1000) / 4 + rng.below(3) as u32;
                    writeln!(
                        out.cctv,
                        "Z{},{},{day},{hour},{minute},{motion}",
                        floor + 1,
                        floor + 1
                    )?;
                }
            }
        }
    }
    Ok(rows)
}

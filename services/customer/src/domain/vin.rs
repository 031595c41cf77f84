//! VINs (ISO 3779): the rules a VIN typed for a new vehicle must follow, and what a VIN says
//! of itself, decoded offline from two public tables: the manufacturers (WMI, positions 1-3,
//! `data/wmi.tsv`, shipped in the repository) and the model-year codes (position 10).
//!
//! Written here rather than taken from a crate: the VIN crates on crates.io are single
//! releases by one owner with their own compiled-in tables, or carry the whole NHTSA vPIC
//! database (tens of MB, fetched at build or first use). What a garage needs is small, and
//! which regions must carry a check digit is our rule to state.
//!
//! - **Check digit** (position 9, the North American algorithm of 49 CFR 565 that ISO 3779
//!   leaves optional): enforced where the region's law makes it mandatory: WMIs starting
//!   with `1`-`5` (United States, Canada, Mexico), `7F`-`7Z` (United States, e.g. Tesla's
//!   `7SA`) and `L` (China, GB 16735). Elsewhere (Europe, Japan, Korea, ...) position 9 is
//!   the maker's own and may be any character, so it is reported, never refused.
//! - **Model year** (position 10) repeats every 30 years. For North American VINs the
//!   standard settles the cycle with position 7: a digit means 1980-2009, a letter
//!   2010-2039 (mandatory from model year 2010; an older VIN with a letter there is read
//!   30 years earlier when the later year has not come yet). Elsewhere the code is read as
//!   the latest year of the cycle that is not after next year, and marked uncertain.

use std::collections::HashMap;
use std::sync::LazyLock;

use carerp_kit::FieldViolation;

pub const LENGTH: usize = 17;

/// Position 9 (index 8).
const CHECK_POSITION: usize = 8;

/// The weight of each position in the check-digit sum; position 9 itself weighs nothing.
const WEIGHTS: [u32; LENGTH] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// The year codes of position 10 for 1980-2009 (and again from 2010, 2040, ...): letters
/// without I, O, Q, U, Z, then the digits 1-9 (0 is not used).
const YEAR_CODES: &str = "ABCDEFGHJKLMNPRSTVWXY123456789";

/// The first model year the codes stand for.
const FIRST_MODEL_YEAR: i32 = 1980;

/// Whether `c` may appear in a VIN: digits and capital letters but I, O and Q, which read
/// like 1 and 0.
fn allowed(c: char) -> bool {
    c.is_ascii_digit() || (c.is_ascii_uppercase() && !matches!(c, 'I' | 'O' | 'Q'))
}

/// The value of a character in the check-digit sum (the North American transliteration).
fn value(c: u8) -> u32 {
    match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A' | b'J' => 1,
        b'B' | b'K' | b'S' => 2,
        b'C' | b'L' | b'T' => 3,
        b'D' | b'M' | b'U' => 4,
        b'E' | b'N' | b'V' => 5,
        b'F' | b'W' => 6,
        b'G' | b'P' | b'X' => 7,
        b'H' | b'Y' => 8,
        b'R' | b'Z' => 9,
        _ => 0,
    }
}

/// The check digit a VIN of 17 allowed characters should carry at position 9: `0`-`9` or `X`.
pub fn check_digit(vin: &str) -> char {
    let sum: u32 = vin
        .bytes()
        .zip(WEIGHTS)
        .map(|(c, weight)| value(c) * weight)
        .sum();
    match sum % 11 {
        10 => 'X',
        digit => char::from_digit(digit, 10).unwrap_or('X'),
    }
}

/// Whether the VIN's region makes position 9 a mandatory check digit (see the module doc).
pub fn region_uses_check_digit(vin: &str) -> bool {
    let mut chars = vin.chars();
    matches!(
        (chars.next(), chars.next()),
        (Some('1'..='5' | 'L'), _) | (Some('7'), Some('F'..='Z'))
    )
}

/// Whether the model-year cycle is settled by position 7 (North American VINs).
fn north_american(vin: &str) -> bool {
    region_uses_check_digit(vin) && !vin.starts_with('L')
}

/// The rules of a VIN typed for a new vehicle (upper case already): 17 characters of the
/// VIN alphabet and, where the region uses it, the right check digit. Each error says what
/// is wrong and where.
pub fn check_vin(vin: &str) -> Result<(), FieldViolation> {
    let length = vin.chars().count();
    if length != LENGTH {
        return Err(FieldViolation::new(
            "vin",
            format!("must be {LENGTH} characters, is {length}"),
        ));
    }
    if let Some((at, bad)) = vin.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        return Err(FieldViolation::new(
            "vin",
            format!(
                "{bad:?} at position {} is not allowed: only A-H, J-N, P, R-Z and 0-9 (no I, O or Q)",
                at + 1
            ),
        ));
    }
    if region_uses_check_digit(vin) {
        let expected = check_digit(vin);
        let found = char::from(vin.as_bytes()[CHECK_POSITION]);
        if found != expected {
            return Err(FieldViolation::new(
                "vin",
                format!(
                    "check digit is {expected}, the VIN says {found}: position 9 must match \
                     the other 16 characters, so one of them is probably mistyped"
                ),
            ));
        }
    }
    Ok(())
}

/// What position 9 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDigit {
    /// The region does not use a check digit.
    NotUsed,
    Valid,
    /// Only a VIN stored before the rule was enforced can be so.
    Invalid {
        expected: char,
        found: char,
    },
}

/// A model year read from position 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelYear {
    pub year: i32,
    /// Settled by the standard (position 7 of a North American VIN), or by the year typed
    /// for the vehicle falling in the same cycle; otherwise the latest year of the cycle.
    pub certain: bool,
}

/// What a VIN says of itself, and whether the make and year typed for the vehicle agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// From the WMI table; `None` when it does not know the WMI.
    pub manufacturer: Option<&'static str>,
    /// `None` when position 10 holds no year code.
    pub model_year: Option<ModelYear>,
    pub check_digit: CheckDigit,
    /// The typed make is not the manufacturer or one of its other names.
    pub make_differs: bool,
    /// The typed year is not the model year (or, when uncertain, not of its cycle).
    pub year_differs: bool,
}

/// Decodes a stored VIN against what was typed for the vehicle. `None` when the VIN is not
/// 17 characters of the VIN alphabet (a row stored before the rules were enforced).
pub fn decode(vin: &str, make: &str, year: i32, current_year: i32) -> Option<Decoded> {
    if vin.chars().count() != LENGTH || !vin.chars().all(allowed) {
        return None;
    }
    let bytes = vin.as_bytes();
    let wmi = WMI.get(&vin[..3]);
    let manufacturer = wmi.map(|w| w.manufacturer);
    let check_digit = if region_uses_check_digit(vin) {
        let (expected, found) = (check_digit(vin), char::from(bytes[CHECK_POSITION]));
        if expected == found {
            CheckDigit::Valid
        } else {
            CheckDigit::Invalid { expected, found }
        }
    } else {
        CheckDigit::NotUsed
    };
    let model_year = model_year(vin, current_year).map(|decoded| {
        // A year typed in the same 30-year cycle settles what the VIN leaves open.
        if !decoded.certain && year != decoded.year && (year - decoded.year) % 30 == 0 {
            ModelYear {
                year,
                certain: true,
            }
        } else {
            decoded
        }
    });
    Some(Decoded {
        make_differs: wmi.is_some_and(|w| !w.is_named(make)),
        year_differs: model_year.is_some_and(|m| m.year != year),
        manufacturer,
        model_year,
        check_digit,
    })
}

/// The model year of position 10 (see the module doc for the 30-year cycle).
pub fn model_year(vin: &str, current_year: i32) -> Option<ModelYear> {
    let code = char::from(*vin.as_bytes().get(9)?);
    let offset = YEAR_CODES.find(code)?;
    let first = FIRST_MODEL_YEAR + i32::try_from(offset).ok()?;
    let latest_allowed = current_year + 1;
    if north_american(vin) {
        let later_cycle = vin.as_bytes()[6].is_ascii_alphabetic();
        let year = if later_cycle && first + 30 <= latest_allowed {
            first + 30
        } else {
            first
        };
        return Some(ModelYear {
            year,
            certain: true,
        });
    }
    let mut year = first;
    while year + 30 <= latest_allowed {
        year += 30;
    }
    Some(ModelYear {
        year,
        certain: false,
    })
}

/// One line of the WMI table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wmi {
    pub manufacturer: &'static str,
    /// Other names garages type for the make ("VW").
    pub other_names: Vec<&'static str>,
}

impl Wmi {
    /// Whether `make`, as typed, names this manufacturer: compared without case, spaces or
    /// punctuation, and a typed prefix of three or more characters counts ("Mercedes").
    fn is_named(&self, make: &str) -> bool {
        let typed = fold(make);
        if typed.is_empty() {
            return true;
        }
        std::iter::once(self.manufacturer)
            .chain(self.other_names.iter().copied())
            .map(fold)
            .any(|name| name == typed || (typed.len() >= 3 && name.starts_with(&typed)))
    }
}

/// Lower case letters and digits only; accents kept ("Škoda" and "Skoda" are both listed).
fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

const WMI_TSV: &str = include_str!("../../data/wmi.tsv");

/// The shipped table, parsed once. A malformed table would leave it empty; the unit tests
/// parse the shipped file, so it cannot ship malformed.
static WMI: LazyLock<HashMap<&'static str, Wmi>> =
    LazyLock::new(|| parse_wmi(WMI_TSV).unwrap_or_default());

/// Parses `wmi<TAB>manufacturer[<TAB>other, names]` lines; `#` starts a comment line.
pub fn parse_wmi(text: &'static str) -> Result<HashMap<&'static str, Wmi>, String> {
    let mut table = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut columns = line.split('\t');
        let (Some(wmi), Some(manufacturer)) = (columns.next(), columns.next()) else {
            return Err(format!(
                "line {}: wmi and manufacturer are required",
                number + 1
            ));
        };
        if wmi.chars().count() != 3 || !wmi.chars().all(allowed) || manufacturer.is_empty() {
            return Err(format!("line {}: {line:?} is not a WMI line", number + 1));
        }
        let other_names = columns
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        let entry = Wmi {
            manufacturer,
            other_names,
        };
        if table.insert(wmi, entry).is_some() {
            return Err(format!("line {}: {wmi} is listed twice", number + 1));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real VINs whose check digit is right, as published (NHTSA examples, manufacturer
    /// recalls and the test suites of other decoders), with the model year they decode to.
    const REAL: &[(&str, &str, i32)] = &[
        ("1HGCM82633A004352", "Honda", 2003),
        ("5FNYF5H59HB011946", "Honda", 2017),
        ("1C6RR7LT2JS179571", "Ram", 2018),
        ("5XYRLDLC3NG097496", "Hyundai Kia", 2022),
        ("1M8GDM9AXKP042788", "Motor Coach Industries", 1989),
        ("5GZCZ43D13S812715", "Saturn", 2003),
    ];

    #[test]
    fn real_north_american_vins_pass_and_decode() {
        for (vin, manufacturer, year) in REAL {
            assert_eq!(check_vin(vin), Ok(()), "{vin}");
            let decoded = decode(vin, manufacturer, *year, 2026).unwrap();
            assert_eq!(decoded.manufacturer, Some(*manufacturer), "{vin}");
            assert_eq!(
                decoded.model_year,
                Some(ModelYear {
                    year: *year,
                    certain: true
                }),
                "{vin}"
            );
            assert_eq!(decoded.check_digit, CheckDigit::Valid, "{vin}");
            assert!(!decoded.make_differs && !decoded.year_differs, "{vin}");
        }
    }

    #[test]
    fn the_check_digit_is_computed_including_x() {
        assert_eq!(check_digit("1HGCM82633A004352"), '3');
        assert_eq!(check_digit("1M8GDM9AXKP042788"), 'X');
        // The digit's own position weighs nothing: whatever stands there, the same digit.
        assert_eq!(check_digit("1HGCM826Z3A004352"), '3');
    }

    #[test]
    fn one_changed_character_breaks_the_check_digit_and_says_so() {
        // 1HGCM82633A004352 with the serial's last digit mistyped 2 -> 3.
        let err = check_vin("1HGCM82633A004353").unwrap_err();
        assert_eq!(err.field, "vin");
        assert!(
            err.description
                .starts_with("check digit is 5, the VIN says 3"),
            "{}",
            err.description
        );
        // Every single-character change of a real VIN is caught (what the digit is for),
        // except swapping to a character of the same value at the same weight.
        let vin = "1HGCM82633A004352";
        for at in (0..LENGTH).filter(|&at| at != CHECK_POSITION) {
            let original = vin.as_bytes()[at];
            for c in YEAR_CODES.bytes().chain(b"0UZ".iter().copied()) {
                if value(c) == value(original) {
                    continue;
                }
                let mut changed = vin.as_bytes().to_vec();
                changed[at] = c;
                let changed = String::from_utf8(changed).unwrap();
                // A changed first character may leave the check-digit regions (1 -> B).
                if region_uses_check_digit(&changed) {
                    assert!(check_vin(&changed).is_err(), "{changed}");
                }
            }
        }
    }

    #[test]
    fn the_check_digit_is_enforced_only_where_the_region_uses_it() {
        for (vin, uses) in [
            ("1HGCM82633A004352", true),
            ("2HGFC2F59JH000000", true),
            ("3VWFE21C04M000001", true),
            ("4T1BF1FK5CU000000", true),
            ("5YJ3E1EA7KF000000", true),
            ("7SAYGDEE0PF000000", true),
            ("LRW3E7EK0NC000000", true),
            ("7AT0000000A000000", false),
            ("WVWZZZ1JZ3W386752", false),
            ("JHMCM56557C404453", false),
            ("KNDCE3LG2L5073161", false),
            ("6FPAAAJGCM9A00000", false),
            ("9BWZZZ377VT004251", false),
        ] {
            assert_eq!(region_uses_check_digit(vin), uses, "{vin}");
        }
        // A European VIN with a letter at position 9 is fine.
        assert_eq!(check_vin("WP0ZZZ99ZTS392124"), Ok(()));
        // A Chinese one must match: this Tesla-built VIN says 0, the sum gives 3.
        let err = check_vin("LRW3E7EK0NC000000").unwrap_err();
        assert!(
            err.description
                .starts_with("check digit is 3, the VIN says 0")
        );
        assert_eq!(check_vin("LRW3E7EK3NC000000"), Ok(()));
    }

    #[test]
    fn length_and_alphabet_are_named_with_the_position() {
        assert!(
            check_vin("1HGCM82633A00435")
                .unwrap_err()
                .description
                .contains("17 characters, is 16")
        );
        for letter in ['I', 'O', 'Q'] {
            let vin = format!("WVWZZZ1JZ3W38675{letter}");
            let err = check_vin(&vin).unwrap_err().description;
            assert!(
                err.contains(&format!("'{letter}' at position 17")),
                "{vin}: {err}"
            );
        }
        assert!(check_vin("WVWZZZ1JZ3W38675-").is_err());
        assert!(
            check_vin("wvwzzz1jz3w386752").is_err(),
            "upper case is the caller's job"
        );
    }

    #[test]
    fn model_years_elsewhere_are_the_latest_of_their_cycle() {
        // VW Golf IV, year code 3: 2033 is not yet, so 2003.
        assert_eq!(
            model_year("WVWZZZ1JZ3W386752", 2026),
            Some(ModelYear {
                year: 2003,
                certain: false
            })
        );
        // Kia Niro, year code L: 2020 (not 1990).
        assert_eq!(model_year("KNDCE3LG2L5073161", 2026).unwrap().year, 2020);
        // Next year's models are of this cycle already.
        assert_eq!(model_year("WVWZZZ1KZVW000001", 2026).unwrap().year, 2027);
        // Position 10 holding no year code (Z, U, 0) decodes to none.
        assert_eq!(model_year("WP0ZZZ99ZZS392124", 2026), None);
        assert_eq!(model_year("WP0ZZZ99Z0S392124", 2026), None);
    }

    #[test]
    fn north_american_years_follow_position_7() {
        // Digit at 7: 1980-2009; letter: 2010-2039.
        assert_eq!(model_year("1HGCM82633A004352", 2026).unwrap().year, 2003);
        assert_eq!(model_year("5FNYF5H59HB011946", 2026).unwrap().year, 2017);
        // A letter at 7 on a VIN from before 2010 (not yet mandatory): 2039 is not yet.
        assert_eq!(model_year("1HGCMA2637A000000", 2026).unwrap().year, 2007);
    }

    #[test]
    fn a_typed_year_of_the_same_cycle_settles_an_uncertain_one() {
        let decoded = decode("WVWZZZ1JZLW000001", "VW", 1990, 2026).unwrap();
        assert_eq!(
            decoded.model_year,
            Some(ModelYear {
                year: 1990,
                certain: true
            })
        );
        assert!(!decoded.year_differs);
        let decoded = decode("WVWZZZ1JZLW000001", "VW", 2019, 2026).unwrap();
        assert_eq!(decoded.model_year.unwrap().year, 2020);
        assert!(decoded.year_differs);
    }

    #[test]
    fn a_typed_make_is_compared_with_the_manufacturer_and_its_other_names() {
        let differs = |vin: &str, make: &str| decode(vin, make, 2003, 2026).unwrap().make_differs;
        assert!(!differs("WVWZZZ1JZ3W386752", "Volkswagen"));
        assert!(!differs("WVWZZZ1JZ3W386752", "vw"));
        assert!(!differs("WDBEA30D3HA391172", "Mercedes"));
        assert!(!differs("TMBJJ7NE0J0000005", "Skoda"));
        assert!(differs("WVWZZZ1JZ3W386752", "Audi"));
        assert!(differs("WVWZZZ1JZ3W386752", "V"));
        // Unknown WMI: nothing to disagree with.
        let unknown = decode("AAAZZZ1JZ3W386752", "Whatever", 2003, 2026).unwrap();
        assert_eq!(unknown.manufacturer, None);
        assert!(!unknown.make_differs);
    }

    #[test]
    fn a_stored_vin_breaking_the_rules_still_decodes_what_it_can() {
        let decoded = decode("1HGCM82633A004353", "Honda", 2003, 2026).unwrap();
        assert_eq!(
            decoded.check_digit,
            CheckDigit::Invalid {
                expected: '5',
                found: '3'
            }
        );
        assert_eq!(decoded.manufacturer, Some("Honda"));
        assert_eq!(decode("SHORT", "Honda", 2003, 2026), None);
        assert_eq!(decode("1HGCM82633A00435O", "Honda", 2003, 2026), None);
    }

    #[test]
    fn the_shipped_wmi_table_parses() {
        let table = parse_wmi(WMI_TSV).unwrap();
        assert!(table.len() > 100, "{}", table.len());
        assert_eq!(table.len(), WMI.len());
        assert_eq!(table["WVW"].manufacturer, "Volkswagen");
        assert_eq!(table["WVW"].other_names, ["VW"]);
        assert!(table["WBA"].other_names.is_empty());
    }

    #[test]
    fn a_malformed_wmi_table_is_refused() {
        assert!(parse_wmi("WV\tVolkswagen\n").is_err());
        assert!(parse_wmi("WVW\n").is_err());
        assert!(parse_wmi("WVW\tVolkswagen\nWVW\tVW\n").is_err());
        assert!(parse_wmi("# comment\n\nWVW\tVolkswagen\t\n").is_ok());
    }
}

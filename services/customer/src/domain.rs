//! Customers and vehicles as the garage knows them, and the rules their fields follow.
//! Pure: no I/O, so every rule is unit-tested directly.

pub mod vin;

use carerp_kit::{FieldViolation, Violations};

pub use vin::check_vin;

const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 200;
const MAX_NOTES: usize = 4000;
/// The first car (Benz Patent-Motorwagen).
pub const FIRST_CAR_YEAR: i32 = 1886;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub line1: String,
    pub line2: String,
    pub postal_code: String,
    pub city: String,
    /// ISO 3166-1 alpha-2, upper case, or empty.
    pub country: String,
}

/// A customer's editable fields, validated and normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFields {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address: Address,
    pub notes: String,
}

impl CustomerFields {
    /// Trims every field, normalises the phone number, and checks every rule, reporting all
    /// violations at once. A customer needs a name and a way to reach them.
    pub fn validate(raw: CustomerFields) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let name = v.required_text("name", &raw.name, MAX_NAME);
        let email = raw.email.trim().to_string();
        if !email.is_empty() {
            v.check(check_email(&email));
        }
        let phone = match raw.phone.trim() {
            "" => String::new(),
            given => normalise_phone(given).unwrap_or_else(|violation| {
                v.check(Err(violation));
                String::new()
            }),
        };
        if email.is_empty() && raw.phone.trim().is_empty() {
            v.add("email", "an email address or a phone number is required");
        }
        let address = Address {
            line1: v.optional_text("address.line1", &raw.address.line1, MAX_TEXT),
            line2: v.optional_text("address.line2", &raw.address.line2, MAX_TEXT),
            postal_code: v.optional_text("address.postal_code", &raw.address.postal_code, 20),
            city: v.optional_text("address.city", &raw.address.city, MAX_TEXT),
            country: raw.address.country.trim().to_ascii_uppercase(),
        };
        let is_alpha2 =
            |code: &str| code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase());
        if !address.country.is_empty() && !is_alpha2(&address.country) {
            v.add(
                "address.country",
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 code such as DE",
                    raw.address.country
                ),
            );
        }
        let notes = v.optional_text("notes", &raw.notes, MAX_NOTES);
        v.into_result(Self {
            name,
            email,
            phone,
            address,
            notes,
        })
    }
}

/// A vehicle's fields, validated and normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VehicleFields {
    /// Upper case, 17 characters.
    pub vin: String,
    pub make: String,
    pub model: String,
    pub year: i32,
    /// Upper case, or empty for an unregistered vehicle.
    pub license_plate: String,
    pub mileage: i64,
}

impl VehicleFields {
    /// A new vehicle: every rule, the VIN's included. `current_year` bounds the model year:
    /// a car may be of next year's model, not later.
    pub fn validate(raw: VehicleFields, current_year: i32) -> Result<Self, Violations> {
        Self::validate_fields(raw, current_year, true)
    }

    /// A stored vehicle's new description: the VIN does not change, so it is not judged
    /// again, and a vehicle stored before a VIN rule was enforced stays editable.
    pub fn validate_update(raw: VehicleFields, current_year: i32) -> Result<Self, Violations> {
        Self::validate_fields(raw, current_year, false)
    }

    fn validate_fields(
        raw: VehicleFields,
        current_year: i32,
        new_vin: bool,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let vin = raw.vin.trim().to_ascii_uppercase();
        if new_vin {
            v.check(check_vin(&vin));
        }
        let make = v.required_text("make", &raw.make, MAX_TEXT);
        let model = v.required_text("model", &raw.model, MAX_TEXT);
        v.check(check_year(raw.year, current_year));
        let license_plate = v
            .optional_text("license_plate", &raw.license_plate, 16)
            .to_ascii_uppercase();
        if raw.mileage < 0 {
            v.add(
                "mileage",
                format!("must not be negative, is {}", raw.mileage),
            );
        }
        v.into_result(Self {
            vin,
            make,
            model,
            year: raw.year,
            license_plate,
            mileage: raw.mileage,
        })
    }
}

/// A vehicle's odometer only goes up; a lower reading is a typo or fraud.
pub fn check_mileage_update(current: i64, requested: i64) -> Result<(), MileageDecrease> {
    if requested < current {
        Err(MileageDecrease { current, requested })
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "mileage cannot decrease: the vehicle has {current} km recorded, the update says {requested} km"
)]
pub struct MileageDecrease {
    pub current: i64,
    pub requested: i64,
}

pub fn check_year(year: i32, current_year: i32) -> Result<(), FieldViolation> {
    let latest = current_year + 1;
    if !(FIRST_CAR_YEAR..=latest).contains(&year) {
        return Err(FieldViolation::new(
            "year",
            format!("must be from {FIRST_CAR_YEAR} to {latest}, is {year}"),
        ));
    }
    Ok(())
}

/// A customer's email: the kit's one address check.
pub fn check_email(email: &str) -> Result<(), FieldViolation> {
    carerp_kit::status::email_address("email", email)
}

/// E.164: `+`, a country code that does not start with 0, 8 to 15 digits in all. Spaces,
/// dashes, dots and parentheses people type are dropped.
pub fn normalise_phone(phone: &str) -> Result<String, FieldViolation> {
    let compact: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+');
    let valid = digits.is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    });
    if valid {
        Ok(compact)
    } else {
        Err(FieldViolation::new(
            "phone",
            format!("{phone:?} is not in international form, e.g. +49 30 1234567"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> CustomerFields {
        CustomerFields {
            name: "  Jane Doe ".into(),
            email: " jane@example.com ".into(),
            phone: "+49 (30) 123-4567".into(),
            address: Address {
                country: "de".into(),
                ..Address::default()
            },
            notes: String::new(),
        }
    }

    fn vehicle() -> VehicleFields {
        VehicleFields {
            vin: "wvwzzz1jz3w386752".into(),
            make: "VW".into(),
            model: "Golf".into(),
            year: 2003,
            license_plate: "b-ab 123".into(),
            mileage: 120_000,
        }
    }

    fn fields(err: Violations) -> Vec<String> {
        err.as_slice().iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn a_valid_customer_is_trimmed_and_normalised() {
        let valid = CustomerFields::validate(customer()).unwrap();
        assert_eq!(valid.name, "Jane Doe");
        assert_eq!(valid.email, "jane@example.com");
        assert_eq!(valid.phone, "+49301234567");
        assert_eq!(valid.address.country, "DE");
    }

    #[test]
    fn name_is_required_and_bounded() {
        let err = CustomerFields::validate(CustomerFields {
            name: "   ".into(),
            ..customer()
        })
        .unwrap_err();
        assert_eq!(fields(err), ["name"]);
        let err = CustomerFields::validate(CustomerFields {
            name: "x".repeat(201),
            ..customer()
        })
        .unwrap_err();
        assert_eq!(fields(err), ["name"]);
    }

    #[test]
    fn a_customer_needs_an_email_or_a_phone() {
        let err = CustomerFields::validate(CustomerFields {
            email: "".into(),
            phone: " ".into(),
            ..customer()
        })
        .unwrap_err();
        assert_eq!(fields(err), ["email"]);
        assert!(
            CustomerFields::validate(CustomerFields {
                email: "".into(),
                ..customer()
            })
            .is_ok()
        );
        assert!(
            CustomerFields::validate(CustomerFields {
                phone: "".into(),
                ..customer()
            })
            .is_ok()
        );
    }

    #[test]
    fn email_syntax() {
        for good in [
            "a@b.de",
            "first.last+tag@mail.example.co.uk",
            "x@sub-domain.io",
        ] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "plain",
            "@b.de",
            "a@",
            "a@b",
            "a@@b.de",
            "a b@c.de",
            "a@b..de",
            "a@-.",
            "a@b.de@c.de",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_must_be_international() {
        assert_eq!(
            normalise_phone("+44 20 7946 0958").unwrap(),
            "+442079460958"
        );
        for bad in [
            "030 1234567",
            "+0301234567",
            "+49",
            "+49 30 abc",
            "+1234567890123456",
            "0049301234567",
        ] {
            assert_eq!(normalise_phone(bad).unwrap_err().field, "phone", "{bad}");
        }
    }

    #[test]
    fn country_must_be_two_letters() {
        let mut raw = customer();
        raw.address.country = "Germany".into();
        assert_eq!(
            fields(CustomerFields::validate(raw).unwrap_err()),
            ["address.country"]
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let raw = CustomerFields {
            name: "".into(),
            email: "nope".into(),
            phone: "123".into(),
            ..customer()
        };
        assert_eq!(
            fields(CustomerFields::validate(raw).unwrap_err()),
            ["name", "email", "phone"]
        );
    }

    #[test]
    fn a_valid_vehicle_is_upper_cased() {
        let valid = VehicleFields::validate(vehicle(), 2026).unwrap();
        assert_eq!(valid.vin, "WVWZZZ1JZ3W386752");
        assert_eq!(valid.license_plate, "B-AB 123");
    }

    #[test]
    fn a_new_vin_is_judged_a_stored_one_is_not() {
        let bad_check_digit = VehicleFields {
            vin: "1HGCM82633A004353".into(),
            ..vehicle()
        };
        assert_eq!(
            fields(VehicleFields::validate(bad_check_digit.clone(), 2026).unwrap_err()),
            ["vin"]
        );
        assert!(VehicleFields::validate_update(bad_check_digit, 2026).is_ok());
    }

    #[test]
    fn year_from_1886_to_next_year() {
        assert!(check_year(1886, 2026).is_ok());
        assert!(check_year(2027, 2026).is_ok());
        assert!(check_year(1885, 2026).is_err());
        assert!(check_year(2028, 2026).is_err());
    }

    #[test]
    fn make_model_and_mileage_are_checked() {
        let raw = VehicleFields {
            make: "".into(),
            model: " ".into(),
            mileage: -1,
            ..vehicle()
        };
        assert_eq!(
            fields(VehicleFields::validate(raw, 2026).unwrap_err()),
            ["make", "model", "mileage"]
        );
    }

    #[test]
    fn mileage_never_decreases() {
        assert!(check_mileage_update(1000, 1000).is_ok());
        assert!(check_mileage_update(1000, 1500).is_ok());
        assert_eq!(
            check_mileage_update(1000, 999).unwrap_err(),
            MileageDecrease {
                current: 1000,
                requested: 999
            }
        );
    }
}

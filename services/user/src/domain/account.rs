//! Sign-up and profile validation (SPEC section 3).
//!
//! Every rule is checked and every violation is collected, so a client learns all of its
//! mistakes at once. The checks are written by hand (no regex): each is a few lines and the
//! tables below pin their edges. Violations name the field as the client's JSON spells it
//! (`displayName`) and carry the value as sent; passwords are never echoed back.
//!
//! Values are stored trimmed (`displayName`, `city`, `detailAddress`), e-mail addresses in lower
//! case (so `A@x.com` and `a@x.com` are one account) and phone numbers normalised to
//! `010-1234-5678` form, so uniqueness compares what a person would consider the same value.

use pillivery_platform::error::{FieldViolation, Text};
use serde_json::Value;

pub const EMAIL_MAX_LENGTH: usize = 254;
pub const PASSWORD_MIN_LENGTH: usize = 8;
pub const PASSWORD_MAX_LENGTH: usize = 64;
pub const DISPLAY_NAME_MIN_LENGTH: usize = 2;
pub const DISPLAY_NAME_MAX_LENGTH: usize = 20;
/// Not in the SPEC: bounds that keep a column indexable and a row small.
pub const REAL_NAME_MAX_LENGTH: usize = 50;
pub const CITY_MAX_LENGTH: usize = 100;
pub const DETAIL_ADDRESS_MAX_LENGTH: usize = 255;
/// The special characters a password needs one of.
pub const PASSWORD_SPECIALS: &str = "!@#$%^+=-";

/// A sign-up as the client sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignUpInput {
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub real_name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
}

/// A sign-up that passed every rule, normalised for storage. The password is still plain:
/// hashing is I/O-like work for the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub real_name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// A profile change as the client sent it: absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateInput {
    pub display_name: Option<String>,
    pub real_name: Option<String>,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub detail_address: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// A validated profile change. `new_password` is set only together with the current password,
/// which the service still has to verify against the stored hash.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub display_name: Option<String>,
    pub real_name: Option<String>,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub detail_address: Option<String>,
    pub new_password: Option<String>,
    pub current_password: Option<String>,
}

impl std::fmt::Debug for ProfileChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileChanges")
            .field("display_name", &self.display_name)
            .field("real_name", &self.real_name)
            .field("phone", &self.phone)
            .field("city", &self.city)
            .field("detail_address", &self.detail_address)
            .field(
                "new_password",
                &self.new_password.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl ProfileChanges {
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.real_name.is_none()
            && self.phone.is_none()
            && self.city.is_none()
            && self.detail_address.is_none()
            && self.new_password.is_none()
    }
}

/// Checks a sign-up against every rule; all violations at once.
pub fn validate_sign_up(input: SignUpInput) -> Result<NewAccount, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let email = check(&mut violations, "email", &input.email, email);
    let password = check(&mut violations, "password", &input.password, password);
    let display_name = check(
        &mut violations,
        "displayName",
        &input.display_name,
        display_name,
    );
    let real_name = check(&mut violations, "realName", &input.real_name, real_name);
    let phone = check(&mut violations, "phone", &input.phone, phone);
    let city = check(&mut violations, "city", &input.city, city);
    let detail_address = check(
        &mut violations,
        "detailAddress",
        &input.detail_address,
        detail_address,
    );
    match (
        email,
        password,
        display_name,
        real_name,
        phone,
        city,
        detail_address,
    ) {
        (
            Some(email),
            Some(password),
            Some(display_name),
            Some(real_name),
            Some(phone),
            Some(city),
            Some(detail_address),
        ) if violations.is_empty() => Ok(NewAccount {
            email,
            password,
            display_name,
            real_name,
            phone,
            city,
            detail_address,
        }),
        _ => Err(violations),
    }
}

/// Checks the fields present in a profile change by the sign-up rules. A new password without
/// the current one is a violation on `currentPassword`; whether the current one is right is
/// for the caller to check against the stored hash.
pub fn validate_update(input: UpdateInput) -> Result<ProfileChanges, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut optional = |field: &str, value: Option<String>, rule: Rule| {
        value.and_then(|value| check(&mut violations, field, &value, rule))
    };
    let display_name = optional("displayName", input.display_name, display_name);
    let real_name = optional("realName", input.real_name, real_name);
    let phone = optional("phone", input.phone, phone);
    let city = optional("city", input.city, city);
    let detail_address = optional("detailAddress", input.detail_address, detail_address);
    let new_password = optional("password", input.password.clone(), password);
    let current_password = input.current_password.filter(|value| !value.is_empty());
    if input.password.is_some() && current_password.is_none() {
        violations.push(current_password_missing());
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(ProfileChanges {
        display_name,
        real_name,
        phone,
        city,
        detail_address,
        current_password: new_password.as_ref().and(current_password),
        new_password,
    })
}

/// The violation for a current password that is missing.
pub fn current_password_missing() -> FieldViolation {
    FieldViolation::new(
        "currentPassword",
        Value::Null,
        Text::new(
            "비밀번호를 바꾸려면 현재 비밀번호를 입력해야 합니다.",
            "the current password is needed to set a new one",
        ),
    )
}

/// The violation for a current password that does not match.
pub fn current_password_wrong() -> FieldViolation {
    FieldViolation::new(
        "currentPassword",
        Value::String(String::new()),
        Text::new(
            "현재 비밀번호가 일치하지 않습니다.",
            "the current password is not correct",
        ),
    )
}

/// An e-mail address as it is stored and looked up: trimmed, lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The e-mail rule alone (config checks, the admin bootstrap): the normalised address.
pub fn validate_email(value: &str) -> Result<String, Text> {
    email(value)
}

/// The password rule alone.
pub fn validate_password(value: &str) -> Result<String, Text> {
    password(value)
}

/// A rule: the normalised value, or why not.
type Rule = fn(&str) -> Result<String, Text>;

fn check(
    violations: &mut Vec<FieldViolation>,
    field: &str,
    value: &str,
    rule: Rule,
) -> Option<String> {
    match rule(value) {
        Ok(normalised) => Some(normalised),
        Err(reason) => {
            // Passwords are secrets: never echo them back, not even in an error.
            let rejected = if field == "password" {
                Value::Null
            } else {
                Value::String(value.to_owned())
            };
            violations.push(FieldViolation::new(field, rejected, reason));
            None
        }
    }
}

fn email(value: &str) -> Result<String, Text> {
    let email = normalize_email(value);
    if email.is_empty() {
        return Err(Text::new("이메일을 입력해 주세요.", "must not be blank"));
    }
    if email.chars().count() > EMAIL_MAX_LENGTH {
        return Err(Text::new(
            "이메일은 254자 이하여야 합니다.",
            "must be at most 254 characters",
        ));
    }
    if !is_email(&email) {
        return Err(Text::new(
            "올바른 이메일 형식이 아닙니다.",
            "must be a valid e-mail address",
        ));
    }
    Ok(email)
}

/// `local@domain.tld`: a dot-atom local part of at most 64 characters, a domain of at least two
/// labels (letters, digits, inner hyphens; 1 to 63 each) ending in a top-level label of at least
/// two letters.
fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

fn password(value: &str) -> Result<String, Text> {
    let length = value.chars().count();
    let shaped = (PASSWORD_MIN_LENGTH..=PASSWORD_MAX_LENGTH).contains(&length)
        && value.chars().any(|c| c.is_ascii_alphabetic())
        && value.chars().any(|c| c.is_ascii_digit())
        && value.chars().any(|c| PASSWORD_SPECIALS.contains(c));
    if shaped {
        Ok(value.to_owned())
    } else {
        Err(Text::new(
            "비밀번호는 8~64자이며 영문, 숫자, 특수문자(!@#$%^+=-)를 각각 하나 이상 포함해야 합니다.",
            "must be 8 to 64 characters with a letter, a digit and one of !@#$%^+=-",
        ))
    }
}

fn display_name(value: &str) -> Result<String, Text> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if (DISPLAY_NAME_MIN_LENGTH..=DISPLAY_NAME_MAX_LENGTH).contains(&length) {
        Ok(trimmed.to_owned())
    } else {
        Err(Text::new(
            "닉네임은 공백이 아닌 2~20자여야 합니다.",
            "must be 2 to 20 characters and not blank",
        ))
    }
}

fn real_name(value: &str) -> Result<String, Text> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(Text::new(
            "이름은 공백 없이 입력해야 합니다.",
            "must not be blank nor contain whitespace",
        ));
    }
    if value.chars().count() > REAL_NAME_MAX_LENGTH {
        return Err(Text::new(
            "이름은 50자 이하여야 합니다.",
            "must be at most 50 characters",
        ));
    }
    Ok(value.to_owned())
}

/// `^01[016789]-?\d{3,4}-?\d{4}$`, normalised to `01X-MMMM-LLLL` (or `01X-MMM-LLLL`).
pub fn normalize_phone(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    if bytes.len() < 3 || bytes[0] != b'0' || bytes[1] != b'1' || !b"016789".contains(&bytes[2]) {
        return None;
    }
    let prefix = &value[..3];
    let rest = value[3..].strip_prefix('-').unwrap_or(&value[3..]);
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let (middle, last) = match rest.split_once('-') {
        Some((middle, last)) => (middle, last),
        None if all_digits(rest) && rest.len() >= 4 => rest.split_at(rest.len() - 4),
        None => return None,
    };
    let valid = (3..=4).contains(&middle.len())
        && last.len() == 4
        && all_digits(middle)
        && all_digits(last);
    valid.then(|| format!("{prefix}-{middle}-{last}"))
}

fn phone(value: &str) -> Result<String, Text> {
    normalize_phone(value).ok_or(Text::new(
        "휴대폰 번호 형식이 올바르지 않습니다. (예: 010-1234-5678)",
        "must be a Korean mobile number such as 010-1234-5678",
    ))
}

fn non_blank(value: &str, max: usize, too_long: Text) -> Result<String, Text> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Text::new("공백일 수 없습니다.", "must not be blank"));
    }
    if trimmed.chars().count() > max {
        return Err(too_long);
    }
    Ok(trimmed.to_owned())
}

fn city(value: &str) -> Result<String, Text> {
    non_blank(
        value,
        CITY_MAX_LENGTH,
        Text::new("100자 이하여야 합니다.", "must be at most 100 characters"),
    )
}

fn detail_address(value: &str) -> Result<String, Text> {
    non_blank(
        value,
        DETAIL_ADDRESS_MAX_LENGTH,
        Text::new("255자 이하여야 합니다.", "must be at most 255 characters"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SignUpInput {
        SignUpInput {
            email: "Kim@Example.com".into(),
            password: "secret12!".into(),
            display_name: " 건강왕 ".into(),
            real_name: "김철수".into(),
            phone: "01012345678".into(),
            city: "서울".into(),
            detail_address: "강남구 테헤란로 1".into(),
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn a_valid_sign_up_is_normalised() {
        let account = validate_sign_up(valid()).unwrap();
        assert_eq!(account.email, "kim@example.com");
        assert_eq!(account.display_name, "건강왕");
        assert_eq!(account.phone, "010-1234-5678");
        assert_eq!(account.city, "서울");
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let violations = validate_sign_up(SignUpInput::default()).unwrap_err();
        assert_eq!(
            fields(&violations),
            [
                "email",
                "password",
                "displayName",
                "realName",
                "phone",
                "city",
                "detailAddress"
            ]
        );
        assert!(violations.iter().all(|v| !v.reason.ko.is_empty()));
    }

    #[test]
    fn emails() {
        let long_local = "a".repeat(64);
        let at_limit = format!(
            "{long_local}@{}.com",
            "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(57)
        );
        assert_eq!(at_limit.len(), 254);
        let over_limit = format!(
            "{long_local}@{}.com",
            "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(58)
        );
        let table: &[(&str, bool)] = &[
            ("a@b.co", true),
            ("first.last+tag@sub.example.kr", true),
            ("UPPER@EXAMPLE.COM", true),
            (&at_limit, true),
            (&over_limit, false),
            ("", false),
            ("   ", false),
            ("plain", false),
            ("@example.com", false),
            ("a@", false),
            ("a@localhost", false),
            ("a@b.c", false),
            ("a@@b.com", false),
            ("a b@c.com", false),
            (".a@b.com", false),
            ("a..b@c.com", false),
            ("a@-b.com", false),
            ("a@b-.com", false),
            ("a@b..com", false),
            ("a@b.c0m", false),
            ("한글@b.com", false),
        ];
        for (value, ok) in table {
            assert_eq!(email(value).is_ok(), *ok, "{value:?}");
        }
    }

    #[test]
    fn passwords() {
        let table: &[(&str, bool)] = &[
            ("abcd123!", true),
            ("ABCD123=", true),
            ("a1-aaaaa", true),
            ("a1^aaaaa", true),
            ("a1+aaaaa", true),
            ("a1@aaaaa", true),
            ("a1#$%aaa", true),
            ("abc123!", false), // 7
            ("abcdefg!", false),
            ("12345678!", false),
            ("abcd1234", false),
            ("abcd123&", false), // & is not one of the specials
            ("abcd123*", false),
            ("", false),
        ];
        for (value, ok) in table {
            assert_eq!(password(value).is_ok(), *ok, "{value:?}");
        }
        let max = format!("a1!{}", "x".repeat(61));
        assert_eq!(max.len(), 64);
        assert!(password(&max).is_ok());
        assert!(password(&format!("{max}x")).is_err());
    }

    #[test]
    fn passwords_are_never_echoed() {
        let violations = validate_sign_up(SignUpInput {
            password: "short".into(),
            ..valid()
        })
        .unwrap_err();
        assert_eq!(fields(&violations), ["password"]);
        assert_eq!(violations[0].rejected_value, Value::Null);
    }

    #[test]
    fn display_names() {
        let table: &[(&str, Option<&str>)] = &[
            ("ab", Some("ab")),
            ("가나", Some("가나")),
            ("  가나  ", Some("가나")),
            (&"가".repeat(20), Some(&"가".repeat(20))),
            (&"가".repeat(21), None),
            ("a", None),
            (" a ", None),
            ("", None),
            ("     ", None),
        ];
        for (value, expected) in table {
            assert_eq!(display_name(value).ok().as_deref(), *expected, "{value:?}");
        }
    }

    #[test]
    fn real_names() {
        let table: &[(&str, bool)] = &[
            ("김철수", true),
            ("Kim", true),
            ("", false),
            (" ", false),
            ("김 철수", false),
            ("김철수 ", false),
            ("김\t철수", false),
            (&"가".repeat(50), true),
            (&"가".repeat(51), false),
        ];
        for (value, ok) in table {
            assert_eq!(real_name(value).is_ok(), *ok, "{value:?}");
        }
    }

    #[test]
    fn phones() {
        let table: &[(&str, Option<&str>)] = &[
            ("01012345678", Some("010-1234-5678")),
            ("010-1234-5678", Some("010-1234-5678")),
            ("010-12345678", Some("010-1234-5678")),
            ("0101234-5678", Some("010-1234-5678")),
            ("0111234567", Some("011-123-4567")),
            ("011-123-4567", Some("011-123-4567")),
            ("016-123-4567", Some("016-123-4567")),
            ("017-1234-5678", Some("017-1234-5678")),
            ("018-1234-5678", Some("018-1234-5678")),
            ("019-1234-5678", Some("019-1234-5678")),
            ("012-1234-5678", None),
            ("020-1234-5678", None),
            ("010--1234-5678", None),
            ("010-1234--5678", None),
            ("010-12-5678", None),
            ("010-12345-5678", None),
            ("010-1234-567", None),
            ("010-1234-56789", None),
            ("0101234567", Some("010-123-4567")),
            ("010123456", None),
            ("010123456789", None),
            ("010 1234 5678", None),
            ("+8210-1234-5678", None),
            ("010-1234-567a", None),
            ("010-１２３４-5678", None),
            ("", None),
            ("01", None),
        ];
        for (value, expected) in table {
            assert_eq!(normalize_phone(value).as_deref(), *expected, "{value:?}");
        }
    }

    #[test]
    fn cities_and_addresses_are_non_blank() {
        assert!(city("서울").is_ok());
        assert!(city("  ").is_err());
        assert!(city(&"가".repeat(101)).is_err());
        assert!(detail_address("1동 101호").is_ok());
        assert!(detail_address("").is_err());
        assert!(detail_address(&"가".repeat(256)).is_err());
    }

    #[test]
    fn an_update_checks_only_present_fields() {
        let changes = validate_update(UpdateInput {
            phone: Some("01198765432".into()),
            ..UpdateInput::default()
        })
        .unwrap();
        assert_eq!(changes.phone.as_deref(), Some("011-9876-5432"));
        assert!(changes.display_name.is_none());
        assert!(!changes.is_empty());
        assert!(validate_update(UpdateInput::default()).unwrap().is_empty());

        let violations = validate_update(UpdateInput {
            display_name: Some("a".into()),
            real_name: Some("김 철수".into()),
            phone: Some("123".into()),
            city: Some(" ".into()),
            detail_address: Some("".into()),
            ..UpdateInput::default()
        })
        .unwrap_err();
        assert_eq!(
            fields(&violations),
            ["displayName", "realName", "phone", "city", "detailAddress"]
        );
    }

    #[test]
    fn a_new_password_needs_the_current_one() {
        for current in [None, Some(String::new())] {
            let violations = validate_update(UpdateInput {
                password: Some("newpass1!".into()),
                current_password: current,
                ..UpdateInput::default()
            })
            .unwrap_err();
            assert_eq!(fields(&violations), ["currentPassword"]);
        }
        let violations = validate_update(UpdateInput {
            password: Some("weak".into()),
            ..UpdateInput::default()
        })
        .unwrap_err();
        assert_eq!(fields(&violations), ["password", "currentPassword"]);
        let changes = validate_update(UpdateInput {
            password: Some("newpass1!".into()),
            current_password: Some("oldpass1!".into()),
            ..UpdateInput::default()
        })
        .unwrap();
        assert_eq!(changes.new_password.as_deref(), Some("newpass1!"));
        assert_eq!(changes.current_password.as_deref(), Some("oldpass1!"));
        // A current password alone changes nothing and is not kept.
        let changes = validate_update(UpdateInput {
            current_password: Some("oldpass1!".into()),
            ..UpdateInput::default()
        })
        .unwrap();
        assert!(changes.is_empty());
        assert!(changes.current_password.is_none());
    }
}

//! Items as the catalog writes them, and the rules for admin input.
//!
//! [`NewItem`] is everything an admin create, an import or the demo seeder stores for a new
//! item; the prices derived from it ([`NewItem::price`]) are computed once, at write time, and
//! stored. [`ItemDraftInput`] is an admin body as received (the contract's `ItemDraft`): on create
//! every field is required ([`NewItem::from_draft`]), on update only the fields present change
//! ([`ItemChanges::from_draft`]). Both report every violation at once, named by the JSON path the
//! client sent (`productName`, or `items[3].productName` inside an import).

use chrono::NaiveDate;
use pillivery_platform::error::{FieldViolation, Text};
use serde_json::Value;

use super::category::Category;
use super::money::{DiscountRate, Price};

/// Longest product name or brand, in characters: the indexed columns are `VARCHAR(255)`.
pub const MAX_NAME_CHARS: usize = 255;

/// Longest other text, in characters. MySQL's `TEXT` holds 65 535 bytes, and a character takes
/// up to 4 bytes in utf8mb4; 10 000 leaves room and is far beyond any real label text.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Largest origin price: the largest integer a JSON (IEEE double) client reads exactly.
pub const MAX_ORIGIN_PRICE: i64 = 9_007_199_254_740_991;

/// Most items one import may carry; a bigger import is refused as a whole.
pub const MAX_IMPORT_ITEMS: usize = 10_000;

/// A new item, valid by construction when it comes from [`NewItem::from_draft`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewItem {
    pub product_name: String,
    /// The brand.
    pub enterprise: String,
    pub thumbnail: String,
    pub description_image: String,
    pub main_function: String,
    pub base_standard: String,
    pub intake: String,
    pub serving_use: String,
    pub preserve_period: String,
    pub distribution_period: String,
    pub statement_number: String,
    pub registered_date: NaiveDate,
    /// 성상: the product's appearance (form, colour).
    pub sungsang: String,
    /// At least one, no duplicates, in display order.
    pub categories: Vec<Category>,
    pub origin_price: i64,
    pub discount_rate: DiscountRate,
}

impl NewItem {
    /// The prices stored with the item.
    pub fn price(&self) -> Price {
        Price::of(self.origin_price, self.discount_rate)
    }
}

/// An admin body as received: the contract's `ItemDraft` before any rule is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemDraftInput {
    pub product_name: Option<String>,
    pub enterprise: Option<String>,
    pub thumbnail: Option<String>,
    pub description_image: Option<String>,
    pub main_function: Option<String>,
    pub base_standard: Option<String>,
    pub intake: Option<String>,
    pub serving_use: Option<String>,
    pub preserve_period: Option<String>,
    pub distribution_period: Option<String>,
    pub statement_number: Option<String>,
    /// `YYYY-MM-DD`.
    pub registered_date: Option<String>,
    pub sungsang: Option<String>,
    /// Contract enum numbers of `Category`. A repeated field cannot be "absent", so on update an
    /// empty list means "unchanged".
    pub categories: Vec<i32>,
    pub origin_price: Option<i64>,
    pub discount_rate: Option<f64>,
}

/// The validated fields of an update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemChanges {
    pub product_name: Option<String>,
    pub enterprise: Option<String>,
    pub thumbnail: Option<String>,
    pub description_image: Option<String>,
    pub main_function: Option<String>,
    pub base_standard: Option<String>,
    pub intake: Option<String>,
    pub serving_use: Option<String>,
    pub preserve_period: Option<String>,
    pub distribution_period: Option<String>,
    pub statement_number: Option<String>,
    pub registered_date: Option<NaiveDate>,
    pub sungsang: Option<String>,
    pub categories: Option<Vec<Category>>,
    pub origin_price: Option<i64>,
    pub discount_rate: Option<DiscountRate>,
}

impl ItemChanges {
    /// Validates the fields present in an update body.
    pub fn from_draft(
        input: &ItemDraftInput,
        field_prefix: &str,
    ) -> Result<ItemChanges, Vec<FieldViolation>> {
        let mut check = DraftCheck::new(field_prefix, Presence::Optional);
        let changes = ItemChanges {
            product_name: check.name("productName", &input.product_name),
            enterprise: check.name("enterprise", &input.enterprise),
            thumbnail: check.text("thumbnail", &input.thumbnail),
            description_image: check.text("descriptionImage", &input.description_image),
            main_function: check.text("mainFunction", &input.main_function),
            base_standard: check.text("baseStandard", &input.base_standard),
            intake: check.text("intake", &input.intake),
            serving_use: check.text("servingUse", &input.serving_use),
            preserve_period: check.text("preservePeriod", &input.preserve_period),
            distribution_period: check.text("distributionPeriod", &input.distribution_period),
            statement_number: check.text("statementNumber", &input.statement_number),
            registered_date: check.date("registeredDate", &input.registered_date),
            sungsang: check.text("sungsang", &input.sungsang),
            categories: check.categories("categories", &input.categories),
            origin_price: check.origin_price("originPrice", input.origin_price),
            discount_rate: check.discount_rate("discountRate", input.discount_rate),
        };
        check.finish(changes)
    }

    /// True when the body changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == ItemChanges::default()
    }

    /// Whether the prices must be computed again.
    pub fn changes_price(&self) -> bool {
        self.origin_price.is_some() || self.discount_rate.is_some()
    }
}

impl NewItem {
    /// Validates a create body (or one element of an import): every field is required.
    pub fn from_draft(
        input: &ItemDraftInput,
        field_prefix: &str,
    ) -> Result<NewItem, Vec<FieldViolation>> {
        let mut check = DraftCheck::new(field_prefix, Presence::Required);
        let fields = ItemChanges {
            product_name: check.name("productName", &input.product_name),
            enterprise: check.name("enterprise", &input.enterprise),
            thumbnail: check.text("thumbnail", &input.thumbnail),
            description_image: check.text("descriptionImage", &input.description_image),
            main_function: check.text("mainFunction", &input.main_function),
            base_standard: check.text("baseStandard", &input.base_standard),
            intake: check.text("intake", &input.intake),
            serving_use: check.text("servingUse", &input.serving_use),
            preserve_period: check.text("preservePeriod", &input.preserve_period),
            distribution_period: check.text("distributionPeriod", &input.distribution_period),
            statement_number: check.text("statementNumber", &input.statement_number),
            registered_date: check.date("registeredDate", &input.registered_date),
            sungsang: check.text("sungsang", &input.sungsang),
            categories: check.categories("categories", &input.categories),
            origin_price: check.origin_price("originPrice", input.origin_price),
            discount_rate: check.discount_rate("discountRate", input.discount_rate),
        };
        let fields = check.finish(fields)?;
        // Every field was required and no violation was found, so every field is present; the
        // fallbacks below are unreachable and only avoid a panic path.
        Ok(NewItem {
            product_name: fields.product_name.unwrap_or_default(),
            enterprise: fields.enterprise.unwrap_or_default(),
            thumbnail: fields.thumbnail.unwrap_or_default(),
            description_image: fields.description_image.unwrap_or_default(),
            main_function: fields.main_function.unwrap_or_default(),
            base_standard: fields.base_standard.unwrap_or_default(),
            intake: fields.intake.unwrap_or_default(),
            serving_use: fields.serving_use.unwrap_or_default(),
            preserve_period: fields.preserve_period.unwrap_or_default(),
            distribution_period: fields.distribution_period.unwrap_or_default(),
            statement_number: fields.statement_number.unwrap_or_default(),
            registered_date: fields.registered_date.unwrap_or_default(),
            sungsang: fields.sungsang.unwrap_or_default(),
            categories: fields.categories.unwrap_or_default(),
            origin_price: fields.origin_price.unwrap_or_default(),
            discount_rate: fields.discount_rate.unwrap_or_default(),
        })
    }
}

/// Validates an import: every element as a create body named `items[i]`, all violations of
/// every element at once, so an import is stored whole or not at all.
pub fn import_drafts(drafts: &[ItemDraftInput]) -> Result<Vec<NewItem>, Vec<FieldViolation>> {
    if drafts.len() > MAX_IMPORT_ITEMS {
        // Each element is not checked: the answer would be as big as the import.
        return Err(vec![FieldViolation::new(
            "items",
            Value::from(drafts.len()),
            Text::new(
                "한 번에 10000개 이하의 아이템만 가져올 수 있습니다.",
                "At most 10000 items can be imported at once.",
            ),
        )]);
    }
    let mut items = Vec::with_capacity(drafts.len());
    let mut violations = Vec::new();
    for (index, draft) in drafts.iter().enumerate() {
        match NewItem::from_draft(draft, &format!("items[{index}]")) {
            Ok(item) => items.push(item),
            Err(found) => violations.extend(found),
        }
    }
    if violations.is_empty() {
        Ok(items)
    } else {
        Err(violations)
    }
}

/// Mean star × 100 rounded half-up (4.666… → 467), 0 without reviews.
///
/// This integer is what the catalog stores and what STAR_AVG sorts on, so the order is exactly
/// the order of the 2-decimal `starAvg` clients see ([`star_avg_from_centi`]).
pub fn star_avg_centi(star_sum: i64, review_count: i64) -> i64 {
    if review_count <= 0 {
        return 0;
    }
    let sum = i128::from(star_sum);
    let count = i128::from(review_count);
    // floor(sum·100/count + ½) = floor((200·sum + count) / (2·count)).
    let centi = (200 * sum + count).div_euclid(2 * count);
    i64::try_from(centi).unwrap_or(if centi < 0 { i64::MIN } else { i64::MAX })
}

/// The wire value of a stored mean: 467 → 4.67.
pub fn star_avg_from_centi(centi: i64) -> f64 {
    centi as f64 / 100.0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    Optional,
}

/// Collects the violations of one draft.
struct DraftCheck<'a> {
    prefix: &'a str,
    presence: Presence,
    violations: Vec<FieldViolation>,
}

impl<'a> DraftCheck<'a> {
    fn new(prefix: &'a str, presence: Presence) -> Self {
        DraftCheck {
            prefix,
            presence,
            violations: Vec::new(),
        }
    }

    fn path(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.prefix)
        }
    }

    fn violation(&mut self, field: &str, rejected: Value, reason: Text) {
        let path = self.path(field);
        self.violations
            .push(FieldViolation::new(path, rejected, reason));
    }

    /// `Some(value)` when present; reports a missing required field.
    fn present<'v, T>(&mut self, field: &str, value: &'v Option<T>) -> Option<&'v T> {
        if value.is_none() && self.presence == Presence::Required {
            self.violation(
                field,
                Value::Null,
                Text::new("필수 항목입니다.", "This field is required."),
            );
        }
        value.as_ref()
    }

    /// Product name and brand: trimmed (brand search is exact), non-blank, at most 255 chars.
    fn name(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        let sent = self.present(field, value)?;
        let trimmed = sent.trim();
        if trimmed.is_empty() {
            self.violation(
                field,
                Value::from(sent.as_str()),
                Text::new("비어 있을 수 없습니다.", "Must not be blank."),
            );
            return None;
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            self.violation(
                field,
                Value::from(sent.as_str()),
                Text::new("255자 이하여야 합니다.", "Must be at most 255 characters."),
            );
            return None;
        }
        Some(trimmed.to_owned())
    }

    /// Other texts: kept as sent (blank allowed: not every label has every text).
    fn text(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        let sent = self.present(field, value)?;
        if sent.chars().count() > MAX_TEXT_CHARS {
            self.violation(
                field,
                Value::from(sent.as_str()),
                Text::new(
                    "10000자 이하여야 합니다.",
                    "Must be at most 10000 characters.",
                ),
            );
            return None;
        }
        Some(sent.clone())
    }

    /// `YYYY-MM-DD`, exactly: four-digit year, zero-padded month and day, a real calendar day.
    fn date(&mut self, field: &str, value: &Option<String>) -> Option<NaiveDate> {
        let sent = self.present(field, value)?;
        let shaped = sent.len() == 10
            && sent.bytes().enumerate().all(|(index, byte)| match index {
                4 | 7 => byte == b'-',
                _ => byte.is_ascii_digit(),
            });
        let date = shaped
            .then(|| NaiveDate::parse_from_str(sent, "%Y-%m-%d").ok())
            .flatten();
        if date.is_none() {
            self.violation(
                field,
                Value::from(sent.as_str()),
                Text::new(
                    "YYYY-MM-DD 형식의 날짜여야 합니다.",
                    "Must be a date as YYYY-MM-DD.",
                ),
            );
        }
        date
    }

    /// Known codes, at least one when required (on update, empty means unchanged).
    fn categories(&mut self, field: &str, numbers: &[i32]) -> Option<Vec<Category>> {
        if numbers.is_empty() {
            if self.presence == Presence::Required {
                self.violation(
                    field,
                    Value::Array(Vec::new()),
                    Text::new(
                        "카테고리를 하나 이상 선택해야 합니다.",
                        "At least one category is required.",
                    ),
                );
            }
            return None;
        }
        let mut categories = Vec::with_capacity(numbers.len());
        let mut valid = true;
        for (index, &number) in numbers.iter().enumerate() {
            match Category::from_number(number) {
                Some(category) => categories.push(category),
                None => {
                    valid = false;
                    self.violation(
                        &format!("{field}[{index}]"),
                        Value::from(number),
                        Text::new("알 수 없는 카테고리입니다.", "Unknown category."),
                    );
                }
            }
        }
        categories.sort();
        categories.dedup();
        valid.then_some(categories)
    }

    fn origin_price(&mut self, field: &str, value: Option<i64>) -> Option<i64> {
        let price = *self.present(field, &value)?;
        if !(0..=MAX_ORIGIN_PRICE).contains(&price) {
            self.violation(
                field,
                Value::from(price),
                Text::new(
                    "가격은 0 이상 9007199254740991 이하의 정수여야 합니다.",
                    "Must be an integer between 0 and 9007199254740991.",
                ),
            );
            return None;
        }
        Some(price)
    }

    fn discount_rate(&mut self, field: &str, value: Option<f64>) -> Option<DiscountRate> {
        let fraction = *self.present(field, &value)?;
        match DiscountRate::from_fraction(fraction) {
            Ok(rate) => Some(rate),
            Err(error) => {
                // A NaN or infinity has no JSON number; report it as its text.
                let rejected = serde_json::Number::from_f64(fraction)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::from(fraction.to_string()));
                self.violation(field, rejected, error.reason());
                None
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<FieldViolation>> {
        if self.violations.is_empty() {
            Ok(value)
        } else {
            Err(self.violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_draft() -> ItemDraftInput {
        ItemDraftInput {
            product_name: Some("  종근당 루테인 지아잔틴 골드  ".to_owned()),
            enterprise: Some("종근당".to_owned()),
            thumbnail: Some("https://cdn.example/t.jpg".to_owned()),
            description_image: Some("https://cdn.example/d.jpg".to_owned()),
            main_function: Some("노화로 인해 감소될 수 있는 황반색소밀도를 유지".to_owned()),
            base_standard: Some("루테인 20mg".to_owned()),
            intake: Some("1일 1회, 1회 1캡슐".to_owned()),
            serving_use: Some(String::new()),
            preserve_period: Some("제조일로부터 24개월".to_owned()),
            distribution_period: Some("제조일로부터 24개월".to_owned()),
            statement_number: Some("200400200123".to_owned()),
            registered_date: Some("2024-02-29".to_owned()),
            sungsang: Some("노란색 타원형 연질캡슐".to_owned()),
            categories: vec![Category::Antioxidant.number(), Category::Eye.number()],
            origin_price: Some(15_000),
            discount_rate: Some(0.125),
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn a_full_draft_becomes_a_new_item() {
        let item = NewItem::from_draft(&full_draft(), "").expect("valid draft");
        assert_eq!(item.product_name, "종근당 루테인 지아잔틴 골드");
        assert_eq!(item.serving_use, "");
        assert_eq!(
            item.registered_date,
            NaiveDate::from_ymd_opt(2024, 2, 29).expect("leap day")
        );
        assert_eq!(item.categories, vec![Category::Eye, Category::Antioxidant]);
        assert_eq!(item.discount_rate.basis_points(), 1_250);
        assert_eq!(
            item.price(),
            Price {
                origin: 15_000,
                discount: 1_875,
                real: 13_125
            }
        );
    }

    #[test]
    fn an_empty_create_body_names_every_field() {
        let violations = NewItem::from_draft(&ItemDraftInput::default(), "").expect_err("empty");
        assert_eq!(
            fields(&violations),
            vec![
                "productName",
                "enterprise",
                "thumbnail",
                "descriptionImage",
                "mainFunction",
                "baseStandard",
                "intake",
                "servingUse",
                "preservePeriod",
                "distributionPeriod",
                "statementNumber",
                "registeredDate",
                "sungsang",
                "categories",
                "originPrice",
                "discountRate"
            ]
        );
        assert!(violations.iter().all(|v| !v.reason.ko.is_empty()));
    }

    #[test]
    fn import_elements_are_named_by_their_path() {
        let draft = ItemDraftInput {
            origin_price: Some(-1),
            ..full_draft()
        };
        let violations = NewItem::from_draft(&draft, "items[3]").expect_err("negative price");
        assert_eq!(fields(&violations), vec!["items[3].originPrice"]);
        assert_eq!(violations[0].rejected_value, json!(-1));
    }

    #[test]
    fn invalid_values_are_each_reported() {
        let draft = ItemDraftInput {
            product_name: Some("   ".to_owned()),
            enterprise: Some("가".repeat(256)),
            intake: Some("x".repeat(MAX_TEXT_CHARS + 1)),
            registered_date: Some("2023-02-29".to_owned()),
            categories: vec![1, 0, 42],
            origin_price: Some(MAX_ORIGIN_PRICE + 1),
            discount_rate: Some(0.1234),
            ..full_draft()
        };
        let violations = NewItem::from_draft(&draft, "").expect_err("invalid");
        assert_eq!(
            fields(&violations),
            vec![
                "productName",
                "enterprise",
                "intake",
                "registeredDate",
                "categories[1]",
                "categories[2]",
                "originPrice",
                "discountRate"
            ]
        );
        assert_eq!(violations[4].rejected_value, json!(0));
        assert_eq!(violations[5].rejected_value, json!(42));
        assert_eq!(violations[7].rejected_value, json!(0.1234));
    }

    #[test]
    fn dates_must_be_exactly_iso() {
        for good in ["2024-02-29", "2000-01-01", "1999-12-31"] {
            let draft = ItemDraftInput {
                registered_date: Some(good.to_owned()),
                ..full_draft()
            };
            assert!(NewItem::from_draft(&draft, "").is_ok(), "{good}");
        }
        for bad in [
            "2023-02-29",
            "2024-2-29",
            "2024-02-9",
            "24-02-29",
            "2024/02/29",
            "2024-02-29T00:00:00Z",
            " 2024-02-29",
            "",
            "2024-13-01",
            "2024-00-10",
        ] {
            let draft = ItemDraftInput {
                registered_date: Some(bad.to_owned()),
                ..full_draft()
            };
            let violations = NewItem::from_draft(&draft, "").expect_err(bad);
            assert_eq!(fields(&violations), vec!["registeredDate"], "{bad}");
        }
    }

    #[test]
    fn price_and_rate_edges() {
        for (origin_price, discount_rate) in [(0, 0.0), (MAX_ORIGIN_PRICE, 0.999), (1, 0.5)] {
            let draft = ItemDraftInput {
                origin_price: Some(origin_price),
                discount_rate: Some(discount_rate),
                ..full_draft()
            };
            assert!(NewItem::from_draft(&draft, "").is_ok());
        }
        for discount_rate in [1.0, -0.1, f64::NAN] {
            let draft = ItemDraftInput {
                discount_rate: Some(discount_rate),
                ..full_draft()
            };
            let violations = NewItem::from_draft(&draft, "").expect_err("bad rate");
            assert_eq!(fields(&violations), vec!["discountRate"]);
        }
    }

    #[test]
    fn duplicate_categories_are_merged() {
        let draft = ItemDraftInput {
            categories: vec![9, 1, 9, 1],
            ..full_draft()
        };
        let item = NewItem::from_draft(&draft, "").expect("valid");
        assert_eq!(item.categories, vec![Category::Eye, Category::Etc]);
    }

    #[test]
    fn updates_change_only_what_is_present() {
        let changes = ItemChanges::from_draft(&ItemDraftInput::default(), "").expect("empty");
        assert!(changes.is_empty());
        assert!(!changes.changes_price());

        let changes = ItemChanges::from_draft(
            &ItemDraftInput {
                discount_rate: Some(0.3),
                enterprise: Some(" 뉴트리원 ".to_owned()),
                ..ItemDraftInput::default()
            },
            "",
        )
        .expect("valid");
        assert_eq!(
            changes,
            ItemChanges {
                enterprise: Some("뉴트리원".to_owned()),
                discount_rate: DiscountRate::from_fraction(0.3).ok(),
                ..ItemChanges::default()
            }
        );
        assert!(changes.changes_price());

        let violations = ItemChanges::from_draft(
            &ItemDraftInput {
                product_name: Some(String::new()),
                categories: vec![99],
                ..ItemDraftInput::default()
            },
            "",
        )
        .expect_err("invalid");
        assert_eq!(fields(&violations), vec!["productName", "categories[0]"]);
    }

    #[test]
    fn imports_report_every_element_or_store_all() {
        let drafts = vec![full_draft(), full_draft()];
        let items = import_drafts(&drafts).expect("valid import");
        assert_eq!(items.len(), 2);
        assert!(import_drafts(&[]).expect("empty import").is_empty());

        let bad = vec![
            full_draft(),
            ItemDraftInput {
                product_name: None,
                ..full_draft()
            },
            full_draft(),
            ItemDraftInput {
                categories: Vec::new(),
                discount_rate: Some(1.0),
                ..full_draft()
            },
        ];
        let violations = import_drafts(&bad).expect_err("two bad elements");
        assert_eq!(
            fields(&violations),
            vec![
                "items[1].productName",
                "items[3].categories",
                "items[3].discountRate"
            ]
        );

        let too_many = vec![ItemDraftInput::default(); MAX_IMPORT_ITEMS + 1];
        let violations = import_drafts(&too_many).expect_err("too many");
        assert_eq!(fields(&violations), vec!["items"]);
        assert_eq!(violations[0].rejected_value, json!(MAX_IMPORT_ITEMS + 1));
        let at_limit = vec![full_draft(); MAX_IMPORT_ITEMS];
        assert_eq!(
            import_drafts(&at_limit).expect("at the limit").len(),
            MAX_IMPORT_ITEMS
        );
    }

    #[test]
    fn star_averages_round_half_up_to_two_decimals() {
        let table = [
            (0, 0, 0),
            (5, 0, 0),
            (5, 1, 500),
            (9, 2, 450),
            (14, 3, 467), // 4.666…
            (13, 3, 433), // 4.333…
            (1, 8, 13),   // 0.125 → 0.13
            (7, 8, 88),   // 0.875 → 0.88
            (3, 8, 38),   // 0.375 → 0.38
            (10, 3, 333), // 3.333…
            (11, 3, 367), // 3.666…
            (5_000_000, 1_000_000, 500),
            (12_345, 2_800, 441), // 4.408928…
        ];
        for (star_sum, review_count, centi) in table {
            assert_eq!(
                star_avg_centi(star_sum, review_count),
                centi,
                "{star_sum}/{review_count}"
            );
        }
        assert_eq!(star_avg_from_centi(467), 4.67);
        assert_eq!(star_avg_from_centi(0), 0.0);
        assert_eq!(star_avg_from_centi(500), 5.0);
    }

    proptest::proptest! {
        #[test]
        fn star_average_matches_the_exact_rational(count in 1i64..10_000, stars in proptest::collection::vec(1i64..=5, 1..50)) {
            // Any sum a set of 1–5 star reviews can have, over `count` copies of that set.
            let sum: i64 = stars.iter().sum::<i64>() * count;
            let reviews = stars.len() as i64 * count;
            let centi = star_avg_centi(sum, reviews);
            // centi = floor(100·sum/reviews + ½)  ⇔  −reviews ≤ 2·(100·sum − centi·reviews) < reviews
            let twice_error = 2 * (100 * i128::from(sum) - i128::from(centi) * i128::from(reviews));
            proptest::prop_assert!(-i128::from(reviews) <= twice_error && twice_error < i128::from(reviews));
            proptest::prop_assert!((100..=500).contains(&centi));
        }
    }
}

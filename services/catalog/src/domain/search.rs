//! Item search: sorts, and the validated search built from the raw request.
//!
//! The five list routes (`/api/items`, and the original's `categories`, `search`, `on-sale` and
//! `brands` routes) are one search. [`ItemSearch::from_input`] turns whatever the caller sent into
//! a normalised search or into every violation at once: a trimmed keyword, one category (the
//! legacy `categoryName` is an alias), a price range in order, the on-sale flag from either the
//! parameter or the `on-sale` route, a sort and a page.
//!
//! Enum-valued inputs (`category`, `categoryName`, `sort`) arrive as the contract's enum numbers,
//! 0 meaning "not given", so that a number outside the set is reported here with its field name.

use pillivery_platform::error::{FieldViolation, Text};
use serde_json::Value;

use super::PageRequest;
use super::category::Category;

/// Longest keyword accepted, in characters (after trimming).
pub const MAX_KEYWORD_CHARS: usize = 100;

/// The `listing` value of the legacy on-sale route.
pub const LISTING_ON_SALE: &str = "on-sale";

/// The orders of a search. Every order breaks ties by item id ascending so pages are stable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ItemSort {
    /// Most sold first.
    #[default]
    Sales,
    /// Most recently created first.
    Newest,
    /// Highest real price first.
    PriceHigh,
    /// Lowest real price first.
    PriceLow,
    /// Highest discount rate first.
    DiscountRateHigh,
    /// Lowest discount rate first.
    DiscountRateLow,
    /// Most reviewed first.
    ReviewCount,
    /// Best rated (mean star, 2 decimals) first.
    StarAvg,
}

impl ItemSort {
    pub const ALL: [ItemSort; 8] = [
        ItemSort::Sales,
        ItemSort::Newest,
        ItemSort::PriceHigh,
        ItemSort::PriceLow,
        ItemSort::DiscountRateHigh,
        ItemSort::DiscountRateLow,
        ItemSort::ReviewCount,
        ItemSort::StarAvg,
    ];

    /// The code as the SPEC spells it: `SALES`, `PRICE_H`, ...
    pub fn code(self) -> &'static str {
        match self {
            ItemSort::Sales => "SALES",
            ItemSort::Newest => "NEWEST",
            ItemSort::PriceHigh => "PRICE_H",
            ItemSort::PriceLow => "PRICE_L",
            ItemSort::DiscountRateHigh => "DISCOUNT_RATE_H",
            ItemSort::DiscountRateLow => "DISCOUNT_RATE_L",
            ItemSort::ReviewCount => "REVIEW_COUNT",
            ItemSort::StarAvg => "STAR_AVG",
        }
    }

    pub fn from_code(code: &str) -> Option<ItemSort> {
        ItemSort::ALL.into_iter().find(|sort| sort.code() == code)
    }

    /// The contract's enum number (`ITEM_SORT_SALES = 1` ... `ITEM_SORT_STAR_AVG = 8`).
    pub fn number(self) -> i32 {
        match self {
            ItemSort::Sales => 1,
            ItemSort::Newest => 2,
            ItemSort::PriceHigh => 3,
            ItemSort::PriceLow => 4,
            ItemSort::DiscountRateHigh => 5,
            ItemSort::DiscountRateLow => 6,
            ItemSort::ReviewCount => 7,
            ItemSort::StarAvg => 8,
        }
    }

    /// The sort with this enum number; 0 (unspecified) is the default, unknown numbers `None`.
    pub fn from_number(number: i32) -> Option<ItemSort> {
        if number == 0 {
            return Some(ItemSort::default());
        }
        ItemSort::ALL
            .into_iter()
            .find(|sort| sort.number() == number)
    }

    /// Whether the sort key runs from high to low (the id tiebreak is always ascending).
    pub fn is_descending(self) -> bool {
        !matches!(self, ItemSort::PriceLow | ItemSort::DiscountRateLow)
    }
}

/// A search request as received, before any rule is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchInput {
    pub keyword: Option<String>,
    /// Contract enum number of `Category`; 0 = not given.
    pub category: Option<i32>,
    /// The legacy alias of `category` (`/api/items/categories?categoryName=EYE`).
    pub category_name: Option<i32>,
    pub brand: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub on_sale: Option<bool>,
    /// Set by a legacy route's path: `""` or `"on-sale"`.
    pub listing: String,
    /// Contract enum number of `ItemSort`; 0 = the default (SALES).
    pub sort: i32,
    pub page: Option<i32>,
    pub size: Option<i32>,
}

/// A valid, normalised search.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ItemSearch {
    /// Trimmed, never empty; matched case-insensitively against product name or brand.
    pub keyword: Option<String>,
    pub category: Option<Category>,
    /// Exact brand (enterprise), trimmed, never empty.
    pub brand: Option<String>,
    /// Inclusive bounds on the real price, `min ≤ max` when both are given.
    pub price_range: (Option<i64>, Option<i64>),
    pub on_sale: bool,
    pub sort: ItemSort,
    pub page: PageRequest,
}

impl Default for ItemSearch {
    /// Everything, by sales, first page.
    fn default() -> Self {
        ItemSearch {
            keyword: None,
            category: None,
            brand: None,
            price_range: (None, None),
            on_sale: false,
            sort: ItemSort::default(),
            page: PageRequest::default(),
        }
    }
}

impl ItemSearch {
    /// Applies the search rules, collecting every violation before answering.
    pub fn from_input(input: SearchInput) -> Result<ItemSearch, Vec<FieldViolation>> {
        let mut violations = Vec::new();

        let keyword = input.keyword.as_deref().and_then(non_blank);
        if let Some(keyword) = keyword
            && keyword.chars().count() > MAX_KEYWORD_CHARS
        {
            violations.push(FieldViolation::new(
                "keyword",
                Value::from(input.keyword.clone().unwrap_or_default()),
                Text::new(
                    "검색어는 100자 이하여야 합니다.",
                    "keyword must be at most 100 characters.",
                ),
            ));
        }

        // Control characters (NUL above all) match nothing a shopper types, and PostgreSQL refuses
        // NUL in text: rejected here, they can never reach the database as an error.
        for (field, text) in [("keyword", &input.keyword), ("brand", &input.brand)] {
            if let Some(text) = text
                && text.trim().chars().any(char::is_control)
            {
                violations.push(FieldViolation::new(
                    field,
                    Value::from(text.clone()),
                    Text::new(
                        "제어 문자를 포함할 수 없습니다.",
                        "must not contain control characters.",
                    ),
                ));
            }
        }
        if let Some(brand) = &input.brand
            && brand.chars().count() > MAX_KEYWORD_CHARS
        {
            violations.push(FieldViolation::new(
                "brand",
                Value::from(brand.clone()),
                Text::new(
                    "브랜드는 100자 이하여야 합니다.",
                    "brand must be at most 100 characters.",
                ),
            ));
        }

        let category = read_category(input.category, "category", &mut violations);
        let category_name = read_category(input.category_name, "categoryName", &mut violations);
        if let (Some(Some(category)), Some(Some(alias))) = (category, category_name)
            && category != alias
        {
            violations.push(FieldViolation::new(
                "categoryName",
                Value::from(alias.code()),
                Text::new(
                    "category와 categoryName이 서로 다릅니다.",
                    "categoryName conflicts with category.",
                ),
            ));
        }

        for (field, value) in [("minPrice", input.min_price), ("maxPrice", input.max_price)] {
            if let Some(value) = value
                && value < 0
            {
                violations.push(FieldViolation::new(
                    field,
                    Value::from(value),
                    Text::new(
                        "가격은 0 이상이어야 합니다.",
                        "Prices must not be negative.",
                    ),
                ));
            }
        }

        let listing_on_sale = match input.listing.as_str() {
            "" => false,
            LISTING_ON_SALE if input.on_sale == Some(false) => {
                violations.push(FieldViolation::new(
                    "onSale",
                    Value::from(false),
                    Text::new(
                        "할인 상품 목록에서는 onSale=false를 쓸 수 없습니다.",
                        "onSale=false contradicts the on-sale listing.",
                    ),
                ));
                true
            }
            LISTING_ON_SALE => true,
            other => {
                violations.push(FieldViolation::new(
                    "listing",
                    Value::from(other),
                    Text::new("알 수 없는 목록입니다.", "Unknown listing."),
                ));
                false
            }
        };

        let sort = ItemSort::from_number(input.sort);
        if sort.is_none() {
            violations.push(FieldViolation::new(
                "sort",
                Value::from(input.sort),
                Text::new("지원하지 않는 정렬입니다.", "Unsupported sort."),
            ));
        }

        let page = match PageRequest::from_input(input.page, input.size) {
            Ok(page) => Some(page),
            Err(page_violations) => {
                violations.extend(page_violations);
                None
            }
        };

        if !violations.is_empty() {
            return Err(violations);
        }
        let (min_price, max_price) = match (input.min_price, input.max_price) {
            (Some(min), Some(max)) if min > max => (Some(max), Some(min)),
            range => range,
        };
        Ok(ItemSearch {
            keyword: keyword.map(str::to_owned),
            category: category.flatten().or(category_name.flatten()),
            brand: input
                .brand
                .as_deref()
                .and_then(non_blank)
                .map(str::to_owned),
            price_range: (min_price, max_price),
            on_sale: input.on_sale.unwrap_or(false) || listing_on_sale,
            sort: sort.unwrap_or_default(),
            page: page.unwrap_or_default(),
        })
    }

    /// A canonical text for this search, equal for equal searches and different otherwise,
    /// for cache keys. Free texts are length-prefixed so no keyword can imitate another field.
    pub fn cache_key(&self) -> String {
        let keyword = self.keyword.as_deref().unwrap_or("");
        let brand = self.brand.as_deref().unwrap_or("");
        let bound = |bound: Option<i64>| bound.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "k{}:{keyword}|b{}:{brand}|c{}|p{}..{}|s{}|o{}|n{}|z{}",
            keyword.len(),
            brand.len(),
            self.category.map(Category::code).unwrap_or(""),
            bound(self.price_range.0),
            bound(self.price_range.1),
            u8::from(self.on_sale),
            self.sort.code(),
            self.page.page,
            self.page.size,
        )
    }
}

fn non_blank(text: &str) -> Option<&str> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// `None` when not given (absent or 0), `Some(Some(_))` when known, `Some(None)` after reporting
/// an unknown number.
fn read_category(
    number: Option<i32>,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) -> Option<Option<Category>> {
    let number = number.filter(|&n| n != 0)?;
    let category = Category::from_number(number);
    if category.is_none() {
        violations.push(FieldViolation::new(
            field,
            Value::from(number),
            Text::new("알 수 없는 카테고리입니다.", "Unknown category."),
        ));
    }
    Some(category)
}

#[cfg(test)]
mod control_character_tests {
    use super::*;

    #[test]
    fn control_characters_and_contradictions_are_violations() {
        let violations = ItemSearch::from_input(SearchInput {
            keyword: Some("a\0b".into()),
            brand: Some("x\u{7}".into()),
            listing: LISTING_ON_SALE.into(),
            on_sale: Some(false),
            ..SearchInput::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["keyword", "brand", "onSale"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn search(input: SearchInput) -> ItemSearch {
        ItemSearch::from_input(input).expect("valid search")
    }

    fn violations(input: SearchInput) -> Vec<(String, Value)> {
        ItemSearch::from_input(input)
            .expect_err("invalid search")
            .into_iter()
            .map(|v| {
                assert!(!v.reason.ko.is_empty() && !v.reason.en.is_empty());
                (v.field, v.rejected_value)
            })
            .collect()
    }

    #[test]
    fn sort_codes_and_numbers() {
        let table = [
            (ItemSort::Sales, "SALES", 1, true),
            (ItemSort::Newest, "NEWEST", 2, true),
            (ItemSort::PriceHigh, "PRICE_H", 3, true),
            (ItemSort::PriceLow, "PRICE_L", 4, false),
            (ItemSort::DiscountRateHigh, "DISCOUNT_RATE_H", 5, true),
            (ItemSort::DiscountRateLow, "DISCOUNT_RATE_L", 6, false),
            (ItemSort::ReviewCount, "REVIEW_COUNT", 7, true),
            (ItemSort::StarAvg, "STAR_AVG", 8, true),
        ];
        assert_eq!(table.len(), ItemSort::ALL.len());
        for (sort, code, number, descending) in table {
            assert_eq!(sort.code(), code);
            assert_eq!(ItemSort::from_code(code), Some(sort));
            assert_eq!(sort.number(), number);
            assert_eq!(ItemSort::from_number(number), Some(sort));
            assert_eq!(sort.is_descending(), descending, "{code}");
        }
        assert_eq!(ItemSort::default(), ItemSort::Sales);
        assert_eq!(ItemSort::from_number(0), Some(ItemSort::Sales));
        for number in [-1, 9, 100] {
            assert_eq!(ItemSort::from_number(number), None);
        }
        for code in ["", "sales", "PRICE", "ITEM_SORT_SALES"] {
            assert_eq!(ItemSort::from_code(code), None);
        }
    }

    #[test]
    fn nothing_given_is_everything_by_sales() {
        assert_eq!(search(SearchInput::default()), ItemSearch::default());
    }

    #[test]
    fn keyword_is_trimmed_and_blank_is_none() {
        let table = [
            (None, None),
            (Some(""), None),
            (Some("   "), None),
            (Some("\t\n"), None),
            (Some(" 루테인 "), Some("루테인")),
            (Some("100%"), Some("100%")),
            (Some("  a b  "), Some("a b")),
        ];
        for (sent, want) in table {
            let got = search(SearchInput {
                keyword: sent.map(str::to_owned),
                ..SearchInput::default()
            });
            assert_eq!(got.keyword.as_deref(), want, "{sent:?}");
        }
    }

    #[test]
    fn keyword_length_is_counted_in_characters_after_trimming() {
        let hundred_korean = "가".repeat(100);
        let got = search(SearchInput {
            keyword: Some(format!("  {hundred_korean}  ")),
            ..SearchInput::default()
        });
        assert_eq!(got.keyword.as_deref(), Some(hundred_korean.as_str()));

        let too_long = "a".repeat(101);
        assert_eq!(
            violations(SearchInput {
                keyword: Some(too_long.clone()),
                ..SearchInput::default()
            }),
            vec![("keyword".to_owned(), json!(too_long))]
        );
    }

    #[test]
    fn category_and_its_legacy_alias() {
        let eye = Category::Eye.number();
        let liver = Category::Liver.number();
        let table = [
            (None, None, None),
            (Some(0), None, None),
            (None, Some(0), None),
            (Some(eye), None, Some(Category::Eye)),
            (None, Some(eye), Some(Category::Eye)),
            (Some(eye), Some(eye), Some(Category::Eye)),
            (Some(liver), Some(0), Some(Category::Liver)),
            (Some(0), Some(liver), Some(Category::Liver)),
        ];
        for (category, category_name, want) in table {
            let got = search(SearchInput {
                category,
                category_name,
                ..SearchInput::default()
            });
            assert_eq!(got.category, want, "{category:?} {category_name:?}");
        }
    }

    #[test]
    fn conflicting_or_unknown_categories_are_violations() {
        assert_eq!(
            violations(SearchInput {
                category: Some(Category::Eye.number()),
                category_name: Some(Category::Bone.number()),
                ..SearchInput::default()
            }),
            vec![("categoryName".to_owned(), json!("BONE"))]
        );
        assert_eq!(
            violations(SearchInput {
                category: Some(42),
                category_name: Some(-3),
                ..SearchInput::default()
            }),
            vec![
                ("category".to_owned(), json!(42)),
                ("categoryName".to_owned(), json!(-3))
            ]
        );
    }

    #[test]
    fn brand_is_exact_but_trimmed() {
        let table = [
            (None, None),
            (Some(""), None),
            (Some("  "), None),
            (Some("종근당"), Some("종근당")),
            (Some(" 종근당 "), Some("종근당")),
            (Some("NOW Foods"), Some("NOW Foods")),
        ];
        for (sent, want) in table {
            let got = search(SearchInput {
                brand: sent.map(str::to_owned),
                ..SearchInput::default()
            });
            assert_eq!(got.brand.as_deref(), want, "{sent:?}");
        }
    }

    #[test]
    fn price_range_is_kept_or_swapped() {
        let table = [
            (None, None, (None, None)),
            (Some(0), None, (Some(0), None)),
            (None, Some(0), (None, Some(0))),
            (Some(1_000), Some(5_000), (Some(1_000), Some(5_000))),
            (Some(5_000), Some(1_000), (Some(1_000), Some(5_000))),
            (Some(3_000), Some(3_000), (Some(3_000), Some(3_000))),
            (Some(i64::MAX), Some(0), (Some(0), Some(i64::MAX))),
        ];
        for (min_price, max_price, want) in table {
            let got = search(SearchInput {
                min_price,
                max_price,
                ..SearchInput::default()
            });
            assert_eq!(got.price_range, want, "{min_price:?} {max_price:?}");
        }
    }

    #[test]
    fn negative_prices_are_violations() {
        assert_eq!(
            violations(SearchInput {
                min_price: Some(-1),
                max_price: Some(i64::MIN),
                ..SearchInput::default()
            }),
            vec![
                ("minPrice".to_owned(), json!(-1)),
                ("maxPrice".to_owned(), json!(i64::MIN))
            ]
        );
    }

    #[test]
    fn on_sale_from_the_flag_or_the_route() {
        let table = [
            (None, "", false),
            (Some(false), "", false),
            (Some(true), "", true),
            (None, "on-sale", true),
            (Some(true), "on-sale", true),
        ];
        for (on_sale, listing, want) in table {
            let got = search(SearchInput {
                on_sale,
                listing: listing.to_owned(),
                ..SearchInput::default()
            });
            assert_eq!(got.on_sale, want, "{on_sale:?} {listing:?}");
        }
        assert_eq!(
            violations(SearchInput {
                listing: "sale".to_owned(),
                ..SearchInput::default()
            }),
            vec![("listing".to_owned(), json!("sale"))]
        );
    }

    #[test]
    fn sort_and_page_are_read() {
        let got = search(SearchInput {
            sort: ItemSort::PriceLow.number(),
            page: Some(3),
            size: Some(50),
            ..SearchInput::default()
        });
        assert_eq!(got.sort, ItemSort::PriceLow);
        assert_eq!(got.page, PageRequest { page: 3, size: 50 });
        assert_eq!(
            violations(SearchInput {
                sort: 99,
                ..SearchInput::default()
            }),
            vec![("sort".to_owned(), json!(99))]
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let got = violations(SearchInput {
            keyword: Some("x".repeat(200)),
            category: Some(77),
            category_name: Some(Category::Skin.number()),
            brand: Some("아무 브랜드".to_owned()),
            min_price: Some(-5),
            max_price: Some(-6),
            on_sale: Some(true),
            listing: "clearance".to_owned(),
            sort: -1,
            page: Some(0),
            size: Some(1_000),
        });
        let fields: Vec<&str> = got.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "keyword", "category", "minPrice", "maxPrice", "listing", "sort", "page", "size"
            ]
        );
    }

    #[test]
    fn cache_keys_tell_searches_apart() {
        let base = ItemSearch::default();
        let variants = [
            ItemSearch {
                keyword: Some("a|b".to_owned()),
                ..base.clone()
            },
            ItemSearch {
                keyword: Some("a".to_owned()),
                brand: Some("b".to_owned()),
                ..base.clone()
            },
            ItemSearch {
                keyword: Some("a|b1:b".to_owned()),
                ..base.clone()
            },
            ItemSearch {
                category: Some(Category::Eye),
                ..base.clone()
            },
            ItemSearch {
                price_range: (Some(1), None),
                ..base.clone()
            },
            ItemSearch {
                price_range: (None, Some(1)),
                ..base.clone()
            },
            ItemSearch {
                on_sale: true,
                ..base.clone()
            },
            ItemSearch {
                sort: ItemSort::Newest,
                ..base.clone()
            },
            ItemSearch {
                page: PageRequest { page: 2, size: 20 },
                ..base.clone()
            },
            ItemSearch {
                page: PageRequest { page: 1, size: 21 },
                ..base.clone()
            },
            base.clone(),
        ];
        let keys: std::collections::HashSet<String> =
            variants.iter().map(ItemSearch::cache_key).collect();
        assert_eq!(keys.len(), variants.len());
        assert_eq!(base.cache_key(), ItemSearch::default().cache_key());
    }
}

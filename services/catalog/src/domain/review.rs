//! What a review must be (SPEC section 4, "Reviews"): the rules of the request bodies and of the
//! list orders. No I/O: who bought what is the order service's answer, uniqueness and the
//! counters are the store's (see `crate::reviews` for the whole flow).
//!
//! Decisions written down here and in `docs/catalog.md`:
//! - `content` is trimmed (leading and trailing whitespace, line breaks included) and must then
//!   hold 1 to 1000 characters, counted as Unicode scalar values (a Hangul syllable is one); it
//!   is stored trimmed. NUL is refused: PostgreSQL cannot store it in text.
//! - `star` is an integer 1 to 5; `orderId` an id, so at least 1.
//! - Every violation of one body is reported at once, in the body's field order
//!   (`orderId`, `star`, `content`).

use pillivery_platform::error::{FieldViolation, Text};

use crate::domain::PageRequest;

/// The most characters of a review's text, after trimming.
pub const MAX_CONTENT_CHARS: usize = 1000;

/// The lowest and highest star.
pub const STARS: std::ops::RangeInclusive<i32> = 1..=5;

/// Orders of a review list. Reviews with equal sort keys are shown newest first (then by
/// review id, descending), so pages are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReviewSort {
    /// The default.
    Newest,
    Oldest,
    /// Highest star first.
    StarHigh,
    /// Lowest star first.
    StarLow,
}

impl ReviewSort {
    /// The contract's enum number (`ReviewSort` in catalog.proto); 0 (unspecified) is the
    /// default NEWEST. Anything else is `None`.
    pub fn from_number(number: i32) -> Option<ReviewSort> {
        match number {
            0 | 1 => Some(ReviewSort::Newest),
            2 => Some(ReviewSort::Oldest),
            3 => Some(ReviewSort::StarHigh),
            4 => Some(ReviewSort::StarLow),
            _ => None,
        }
    }
}

/// A validated list request: the order and the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReviewListQuery {
    pub sort: ReviewSort,
    pub page: PageRequest,
}

impl ReviewListQuery {
    /// Checks `sort`, `page` and `size` as sent; every violation at once.
    pub fn from_input(
        sort: i32,
        page: Option<i32>,
        size: Option<i32>,
    ) -> Result<ReviewListQuery, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let number = sort;
        let sort = ReviewSort::from_number(number);
        if sort.is_none() {
            violations.push(FieldViolation::new(
                "sort",
                serde_json::Value::from(number),
                Text::new(
                    "sort는 NEWEST, OLDEST, STAR_H, STAR_L 중 하나여야 합니다.",
                    "sort must be one of NEWEST, OLDEST, STAR_H, STAR_L.",
                ),
            ));
        }
        let page = PageRequest::from_input(page, size)
            .map_err(|mut more| violations.append(&mut more))
            .ok();
        match (sort, page) {
            (Some(sort), Some(page)) if violations.is_empty() => Ok(ReviewListQuery { sort, page }),
            _ => Err(violations),
        }
    }
}

/// The body of a new review, checked: what the client chose. The author and the display name
/// come from the token and the user service, never from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewDraft {
    pub order_id: i64,
    pub star: i32,
    /// Trimmed.
    pub content: String,
}

impl ReviewDraft {
    /// Checks a create body; every violation at once.
    pub fn from_input(
        order_id: i64,
        star: i32,
        content: &str,
    ) -> Result<ReviewDraft, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        if order_id < 1 {
            violations.push(FieldViolation::new(
                "orderId",
                serde_json::Value::from(order_id),
                Text::new(
                    "주문 ID는 1 이상이어야 합니다.",
                    "orderId must be a valid order id.",
                ),
            ));
        }
        let star = check_star(star, &mut violations);
        let content = check_content(content, &mut violations);
        match (star, content) {
            (Some(star), Some(content)) if violations.is_empty() => Ok(ReviewDraft {
                order_id,
                star,
                content,
            }),
            _ => Err(violations),
        }
    }
}

/// The fields an edit changes; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReviewChanges {
    pub star: Option<i32>,
    /// Trimmed.
    pub content: Option<String>,
}

impl ReviewChanges {
    /// Checks an edit body: each field present follows the create rules; every violation at
    /// once. An edit with neither field changes nothing.
    pub fn from_input(
        star: Option<i32>,
        content: Option<&str>,
    ) -> Result<ReviewChanges, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let star = star.and_then(|star| check_star(star, &mut violations));
        let content = content.and_then(|content| check_content(content, &mut violations));
        if violations.is_empty() {
            Ok(ReviewChanges { star, content })
        } else {
            Err(violations)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.star.is_none() && self.content.is_none()
    }
}

/// The star, or `None` with its violation added.
fn check_star(star: i32, violations: &mut Vec<FieldViolation>) -> Option<i32> {
    if STARS.contains(&star) {
        return Some(star);
    }
    violations.push(FieldViolation::new(
        "star",
        serde_json::Value::from(star),
        Text::new(
            "별점은 1 이상 5 이하여야 합니다.",
            "star must be between 1 and 5.",
        ),
    ));
    None
}

/// The trimmed text, or `None` with its violation added. The rejected value is the text as
/// sent, except a text too long to echo: then only its length.
fn check_content(content: &str, violations: &mut Vec<FieldViolation>) -> Option<String> {
    let trimmed = content.trim();
    let chars = trimmed.chars().count();
    let reason = if trimmed.contains('\0') {
        Text::new(
            "리뷰 내용에 NUL 문자를 쓸 수 없습니다.",
            "content must not contain NUL characters.",
        )
    } else if chars == 0 || chars > MAX_CONTENT_CHARS {
        Text::new(
            "리뷰 내용은 공백을 제외하고 1자 이상 1000자 이하여야 합니다.",
            "content must be 1 to 1000 characters, not counting surrounding spaces.",
        )
    } else {
        return Some(trimmed.to_owned());
    };
    let rejected = if chars > MAX_CONTENT_CHARS {
        serde_json::Value::from(format!("({chars} characters)"))
    } else {
        serde_json::Value::from(content)
    };
    violations.push(FieldViolation::new("content", rejected, reason));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn a_good_draft_is_kept_trimmed() {
        let draft = ReviewDraft::from_input(7, 5, "  좋아요\n").unwrap();
        assert_eq!(
            draft,
            ReviewDraft {
                order_id: 7,
                star: 5,
                content: "좋아요".into()
            }
        );
        assert!(ReviewDraft::from_input(1, 1, &"가".repeat(1000)).is_ok());
        assert!(ReviewDraft::from_input(1, 1, &format!(" {} ", "a".repeat(1000))).is_ok());
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let violations = ReviewDraft::from_input(0, 6, "   ").unwrap_err();
        assert_eq!(fields(&violations), ["orderId", "star", "content"]);
        for (star, content) in [(0, "x".repeat(1001)), (-1, "a\0b".into())] {
            let violations = ReviewDraft::from_input(3, star, &content).unwrap_err();
            assert_eq!(fields(&violations), ["star", "content"], "{star}");
        }
        let long = ReviewDraft::from_input(3, 3, &"가".repeat(1001)).unwrap_err();
        assert_eq!(
            long[0].rejected_value,
            serde_json::json!("(1001 characters)")
        );
    }

    #[test]
    fn edits_check_only_what_is_present() {
        assert!(ReviewChanges::from_input(None, None).unwrap().is_empty());
        assert_eq!(
            ReviewChanges::from_input(Some(2), Some(" 다시 씀 ")).unwrap(),
            ReviewChanges {
                star: Some(2),
                content: Some("다시 씀".into())
            }
        );
        let violations = ReviewChanges::from_input(Some(9), Some("")).unwrap_err();
        assert_eq!(fields(&violations), ["star", "content"]);
        let violations = ReviewChanges::from_input(None, Some(" ")).unwrap_err();
        assert_eq!(fields(&violations), ["content"]);
    }

    #[test]
    fn sorts_and_pages_are_checked_together() {
        assert_eq!(
            ReviewListQuery::from_input(0, None, None).unwrap(),
            ReviewListQuery {
                sort: ReviewSort::Newest,
                page: PageRequest::default()
            }
        );
        assert_eq!(ReviewSort::from_number(4), Some(ReviewSort::StarLow));
        assert_eq!(ReviewSort::from_number(5), None);
        let violations = ReviewListQuery::from_input(9, Some(0), Some(101)).unwrap_err();
        assert_eq!(fields(&violations), ["sort", "page", "size"]);
    }
}

//! Page requests and pages of results (SPEC section 2, "Lists"), the same for every list route of
//! every service.
//!
//! `page` is 1-based (default 1) and `size` is 1..=100 (default 20). Values outside are a
//! field violation, never silently clamped. A page past the last is not an error: it has no rows
//! and the true totals.

use pillivery_proto::api::PageInfo;

use crate::error::{FieldViolation, Text};

/// Which slice of a result list to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRequest {
    /// 1-based.
    pub page: u32,
    /// 1..=100.
    pub size: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            page: PageRequest::DEFAULT_PAGE,
            size: PageRequest::DEFAULT_SIZE,
        }
    }
}

impl PageRequest {
    pub const DEFAULT_PAGE: u32 = 1;
    pub const DEFAULT_SIZE: u32 = 20;
    pub const MAX_SIZE: u32 = 100;

    /// Validates `page` and `size` as sent; reports both violations when both are wrong.
    pub fn from_input(
        page: Option<i32>,
        size: Option<i32>,
    ) -> Result<PageRequest, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let page = match page {
            None => Some(PageRequest::DEFAULT_PAGE),
            Some(value) => match u32::try_from(value) {
                Ok(page) if page >= 1 => Some(page),
                _ => {
                    violations.push(FieldViolation::new(
                        "page",
                        serde_json::Value::from(value),
                        Text::new("page는 1 이상이어야 합니다.", "page must be 1 or greater."),
                    ));
                    None
                }
            },
        };
        let size = match size {
            None => Some(PageRequest::DEFAULT_SIZE),
            Some(value) => match u32::try_from(value) {
                Ok(size) if (1..=PageRequest::MAX_SIZE).contains(&size) => Some(size),
                _ => {
                    violations.push(FieldViolation::new(
                        "size",
                        serde_json::Value::from(value),
                        Text::new(
                            "size는 1 이상 100 이하여야 합니다.",
                            "size must be between 1 and 100.",
                        ),
                    ));
                    None
                }
            },
        };
        match (page, size) {
            (Some(page), Some(size)) => Ok(PageRequest { page, size }),
            _ => Err(violations),
        }
    }

    /// Rows to skip before this page.
    pub fn offset(self) -> u64 {
        u64::from(self.page.saturating_sub(1)) * u64::from(self.size)
    }

    /// Rows on a full page.
    pub fn limit(self) -> u64 {
        u64::from(self.size)
    }
}

/// One page of a result list with the totals of the whole list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub page: PageRequest,
    /// Rows in the whole list, not on this page.
    pub total_elements: u64,
}

impl<T> Page<T> {
    /// Pages in the whole list: 0 when the list is empty.
    pub fn total_pages(&self) -> u64 {
        self.total_elements
            .div_ceil(u64::from(self.page.size.max(1)))
    }

    /// The `pageInfo` every list answer carries.
    pub fn page_info(&self) -> PageInfo {
        PageInfo {
            page: self.page.page as i32,
            size: self.page.size as i32,
            total_elements: self.total_elements as i64,
            total_pages: self.total_pages() as i32,
        }
    }

    /// The same page with every row converted.
    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page {
            rows: self.rows.into_iter().map(convert).collect(),
            page: self.page,
            total_elements: self.total_elements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn defaults_are_page_1_of_20() {
        assert_eq!(
            PageRequest::from_input(None, None),
            Ok(PageRequest { page: 1, size: 20 })
        );
        assert_eq!(PageRequest::default(), PageRequest { page: 1, size: 20 });
    }

    #[test]
    fn valid_values_are_kept() {
        let table = [
            (Some(1), Some(1), 1, 1),
            (Some(3), Some(100), 3, 100),
            (Some(i32::MAX), Some(50), i32::MAX as u32, 50),
            (None, Some(7), 1, 7),
            (Some(9), None, 9, 20),
        ];
        for (page, size, want_page, want_size) in table {
            assert_eq!(
                PageRequest::from_input(page, size),
                Ok(PageRequest {
                    page: want_page,
                    size: want_size
                }),
                "{page:?} {size:?}"
            );
        }
    }

    #[test]
    fn values_outside_are_violations_not_clamped() {
        let table: [(Option<i32>, Option<i32>, &[&str]); 8] = [
            (Some(0), None, &["page"]),
            (Some(-1), None, &["page"]),
            (Some(i32::MIN), None, &["page"]),
            (None, Some(0), &["size"]),
            (None, Some(101), &["size"]),
            (None, Some(-20), &["size"]),
            (None, Some(i32::MAX), &["size"]),
            (Some(0), Some(101), &["page", "size"]),
        ];
        for (page, size, want) in table {
            let violations = PageRequest::from_input(page, size).expect_err("invalid");
            assert_eq!(fields(&violations), want, "{page:?} {size:?}");
        }
        let violations = PageRequest::from_input(Some(0), Some(500)).expect_err("invalid");
        assert_eq!(violations[0].rejected_value, serde_json::json!(0));
        assert_eq!(violations[1].rejected_value, serde_json::json!(500));
    }

    #[test]
    fn offsets() {
        assert_eq!(PageRequest { page: 1, size: 20 }.offset(), 0);
        assert_eq!(PageRequest { page: 2, size: 20 }.offset(), 20);
        assert_eq!(PageRequest { page: 5, size: 7 }.offset(), 28);
        // The largest page times the largest size does not overflow.
        assert_eq!(
            PageRequest {
                page: i32::MAX as u32,
                size: 100
            }
            .offset(),
            (i32::MAX as u64 - 1) * 100
        );
        assert_eq!(PageRequest { page: 1, size: 7 }.limit(), 7);
    }

    #[test]
    fn total_pages() {
        let table = [
            (0, 20, 0),
            (1, 20, 1),
            (20, 20, 1),
            (21, 20, 2),
            (123, 20, 7),
            (100, 1, 100),
        ];
        for (total_elements, size, pages) in table {
            let page: Page<()> = Page {
                rows: Vec::new(),
                page: PageRequest { page: 1, size },
                total_elements,
            };
            assert_eq!(page.total_pages(), pages, "{total_elements} / {size}");
        }
    }

    #[test]
    fn map_keeps_the_totals() {
        let page = Page {
            rows: vec![1, 2, 3],
            page: PageRequest { page: 2, size: 3 },
            total_elements: 9,
        };
        let mapped = page.map(|n| n * 10);
        assert_eq!(mapped.rows, vec![10, 20, 30]);
        assert_eq!(mapped.page, PageRequest { page: 2, size: 3 });
        assert_eq!(mapped.total_elements, 9);
        assert_eq!(mapped.total_pages(), 3);
    }
}

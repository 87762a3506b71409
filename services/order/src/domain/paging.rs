//! Page requests and pages of results (SPEC section 2, "Lists").
//!
//! `page` is 1-based (default 1) and `size` is 1..=100 (default 20). Values outside are a
//! field violation naming the parameter, never silently clamped. A page past the last is not an
//! error: it has no rows and the true totals.

use pillivery_platform::error::{FieldViolation, Text};

/// Which slice of a result list to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_sizes_are_checked_not_clamped() {
        type Case = (
            Option<i32>,
            Option<i32>,
            Result<(u32, u32), Vec<&'static str>>,
        );
        let table: [Case; 8] = [
            (None, None, Ok((1, 20))),
            (Some(3), Some(100), Ok((3, 100))),
            (Some(1), Some(1), Ok((1, 1))),
            (Some(0), None, Err(vec!["page"])),
            (Some(-1), Some(20), Err(vec!["page"])),
            (None, Some(0), Err(vec!["size"])),
            (None, Some(101), Err(vec!["size"])),
            (Some(0), Some(101), Err(vec!["page", "size"])),
        ];
        for (page, size, expected) in table {
            let got = PageRequest::from_input(page, size)
                .map(|request| (request.page, request.size))
                .map_err(|violations| {
                    violations
                        .iter()
                        .map(|violation| violation.field.clone())
                        .collect::<Vec<_>>()
                });
            let expected = expected
                .map_err(|fields| fields.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(got, expected, "{page:?} {size:?}");
        }
    }

    #[test]
    fn totals_count_partial_pages() {
        let page = |total_elements, size| Page::<()> {
            rows: Vec::new(),
            page: PageRequest { page: 1, size },
            total_elements,
        };
        assert_eq!(page(0, 20).total_pages(), 0);
        assert_eq!(page(1, 20).total_pages(), 1);
        assert_eq!(page(20, 20).total_pages(), 1);
        assert_eq!(page(21, 20).total_pages(), 2);
        assert_eq!(PageRequest { page: 3, size: 20 }.offset(), 40);
    }
}

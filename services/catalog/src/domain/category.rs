//! The fixed set of item categories (SPEC section 4).
//!
//! The set is closed: the code is what the API, the database (`item_categories.category`) and
//! the cache keys use, the number is the contract's enum number (`pillivery.catalog.v1.Category`),
//! and the Korean label is what the shop shows. Declaration order is the display order, so
//! `Ord` sorts an item's categories the way every answer lists them.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Eye,
    Bone,
    Brain,
    Intestine,
    Liver,
    Skin,
    Antioxidant,
    Fatigue,
    Etc,
}

impl Category {
    /// Every category, in display order.
    pub const ALL: [Category; 9] = [
        Category::Eye,
        Category::Bone,
        Category::Brain,
        Category::Intestine,
        Category::Liver,
        Category::Skin,
        Category::Antioxidant,
        Category::Fatigue,
        Category::Etc,
    ];

    /// The stable code: `EYE`, `BONE`, ... (at most 16 characters, the column's width).
    pub fn code(self) -> &'static str {
        match self {
            Category::Eye => "EYE",
            Category::Bone => "BONE",
            Category::Brain => "BRAIN",
            Category::Intestine => "INTESTINE",
            Category::Liver => "LIVER",
            Category::Skin => "SKIN",
            Category::Antioxidant => "ANTIOXIDANT",
            Category::Fatigue => "FATIGUE",
            Category::Etc => "ETC",
        }
    }

    /// The label the shop shows.
    pub fn label_ko(self) -> &'static str {
        match self {
            Category::Eye => "눈",
            Category::Bone => "뼈·골다공증",
            Category::Brain => "두뇌",
            Category::Intestine => "장·유산균",
            Category::Liver => "간",
            Category::Skin => "피부",
            Category::Antioxidant => "항산화",
            Category::Fatigue => "피로·혈액순환",
            Category::Etc => "기타",
        }
    }

    /// An English label, for English error messages and logs.
    pub fn label_en(self) -> &'static str {
        match self {
            Category::Eye => "Eyes",
            Category::Bone => "Bones & osteoporosis",
            Category::Brain => "Brain",
            Category::Intestine => "Gut & probiotics",
            Category::Liver => "Liver",
            Category::Skin => "Skin",
            Category::Antioxidant => "Antioxidants",
            Category::Fatigue => "Fatigue & circulation",
            Category::Etc => "Other",
        }
    }

    /// The category with this exact code; codes are case-sensitive as the SPEC spells them.
    pub fn from_code(code: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|category| category.code() == code)
    }

    /// The contract's enum number (`CATEGORY_EYE = 1` ... `CATEGORY_ETC = 9`).
    pub fn number(self) -> i32 {
        match self {
            Category::Eye => 1,
            Category::Bone => 2,
            Category::Brain => 3,
            Category::Intestine => 4,
            Category::Liver => 5,
            Category::Skin => 6,
            Category::Antioxidant => 7,
            Category::Fatigue => 8,
            Category::Etc => 9,
        }
    }

    /// The category with this contract enum number; `None` for 0 (unspecified) and unknown numbers.
    pub fn from_number(number: i32) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|category| category.number() == number)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_labels_and_numbers_are_the_specs() {
        let table = [
            (Category::Eye, "EYE", "눈", 1),
            (Category::Bone, "BONE", "뼈·골다공증", 2),
            (Category::Brain, "BRAIN", "두뇌", 3),
            (Category::Intestine, "INTESTINE", "장·유산균", 4),
            (Category::Liver, "LIVER", "간", 5),
            (Category::Skin, "SKIN", "피부", 6),
            (Category::Antioxidant, "ANTIOXIDANT", "항산화", 7),
            (Category::Fatigue, "FATIGUE", "피로·혈액순환", 8),
            (Category::Etc, "ETC", "기타", 9),
        ];
        assert_eq!(table.len(), Category::ALL.len());
        for (index, (category, code, label, number)) in table.into_iter().enumerate() {
            assert_eq!(Category::ALL[index], category, "ALL is in display order");
            assert_eq!(category.code(), code);
            assert_eq!(category.label_ko(), label);
            assert_eq!(category.number(), number);
            assert_eq!(Category::from_code(code), Some(category));
            assert_eq!(Category::from_number(number), Some(category));
            assert_eq!(category.to_string(), code);
            assert!(code.len() <= 16, "fits item_categories.category");
            assert!(!category.label_en().is_empty());
        }
    }

    #[test]
    fn unknown_codes_and_numbers_are_rejected() {
        for code in [
            "",
            "eye",
            "Eye",
            " EYE",
            "EYE ",
            "CATEGORY_EYE",
            "UNSPECIFIED",
            "눈",
        ] {
            assert_eq!(Category::from_code(code), None, "{code:?}");
        }
        for number in [0, -1, 10, i32::MAX, i32::MIN] {
            assert_eq!(Category::from_number(number), None, "{number}");
        }
    }

    #[test]
    fn order_is_display_order() {
        let mut shuffled = vec![
            Category::Etc,
            Category::Eye,
            Category::Liver,
            Category::Bone,
        ];
        shuffled.sort();
        assert_eq!(
            shuffled,
            vec![
                Category::Eye,
                Category::Bone,
                Category::Liver,
                Category::Etc
            ]
        );
    }
}

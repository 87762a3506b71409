//! Demo catalog data for the embedded fleet and the load tests.
//!
//! Deterministic (derived from the index, no randomness) so two runs seed the same shop and a
//! test can predict it. Every category is covered as soon as there are 9 items, about 40 % of
//! the items are on sale, and origin prices are all distinct, so every price sort has a single
//! right answer. Building 40 000 items is a few string formats each.

use chrono::{Days, NaiveDate};

use super::category::Category;
use super::item::NewItem;
use super::money::DiscountRate;
use Category::{Antioxidant, Bone, Brain, Etc, Eye, Fatigue, Intestine, Liver, Skin};

/// The dosage form decides the unit and the intake text.
#[derive(Clone, Copy)]
enum Form {
    SoftCapsule,
    Capsule,
    Tablet,
    Powder,
    Liquid,
}

impl Form {
    fn unit(self) -> &'static str {
        match self {
            Form::SoftCapsule | Form::Capsule => "캡슐",
            Form::Tablet => "정",
            Form::Powder | Form::Liquid => "포",
        }
    }

    fn counts(self) -> [u32; 3] {
        match self {
            Form::SoftCapsule | Form::Capsule | Form::Tablet => [30, 60, 90],
            Form::Powder | Form::Liquid => [14, 30, 60],
        }
    }

    fn intake(self) -> &'static str {
        match self {
            Form::SoftCapsule | Form::Capsule => {
                "1일 1회, 1회 1캡슐을 충분한 물과 함께 섭취하십시오."
            }
            Form::Tablet => "1일 1회, 1회 1정을 충분한 물과 함께 섭취하십시오.",
            Form::Powder => "1일 1회, 1회 1포를 물 없이 또는 물과 함께 섭취하십시오.",
            Form::Liquid => "1일 1회, 1회 1포를 그대로 섭취하십시오.",
        }
    }
}

/// One kind of product: what it is called, what it is for, and how it looks.
struct Product {
    name: &'static str,
    categories: &'static [Category],
    form: Form,
    base_standard: &'static str,
    main_function: &'static str,
    sungsang: &'static str,
}

/// The first nine cover every category, so any demo of 9 or more items covers them all.
const PRODUCTS: [Product; 24] = [
    Product {
        name: "루테인 지아잔틴",
        categories: &[Eye, Antioxidant],
        form: Form::SoftCapsule,
        base_standard: "루테인 20mg, 지아잔틴 4mg / 1일 섭취량",
        main_function: "노화로 인해 감소될 수 있는 황반색소밀도를 유지하여 눈 건강에 도움을 줄 수 있음",
        sungsang: "고유의 향미가 있는 노란색의 타원형 연질캡슐",
    },
    Product {
        name: "칼슘 마그네슘 비타민D",
        categories: &[Bone],
        form: Form::Tablet,
        base_standard: "칼슘 700mg, 마그네슘 315mg, 비타민D 10μg / 1일 섭취량",
        main_function: "뼈와 치아 형성에 필요, 골다공증 발생 위험 감소에 도움을 줌",
        sungsang: "고유의 향미가 있는 흰색의 장방형 정제",
    },
    Product {
        name: "알티지 오메가3",
        categories: &[Brain, Fatigue],
        form: Form::SoftCapsule,
        base_standard: "EPA 및 DHA의 합 600mg / 1일 섭취량",
        main_function: "혈중 중성지질 개선·혈행 개선에 도움을 줄 수 있음, 건조한 눈을 개선하여 눈 건강에 도움을 줄 수 있음",
        sungsang: "투명한 황색의 타원형 연질캡슐",
    },
    Product {
        name: "프로바이오틱스 유산균",
        categories: &[Intestine],
        form: Form::Powder,
        base_standard: "프로바이오틱스 수 100억 CFU / 1일 섭취량",
        main_function: "유산균 증식 및 유해균 억제·배변활동 원활·장 건강에 도움을 줄 수 있음",
        sungsang: "고유의 향미가 있는 미색의 분말",
    },
    Product {
        name: "밀크씨슬 실리마린",
        categories: &[Liver],
        form: Form::Tablet,
        base_standard: "실리마린 130mg / 1일 섭취량",
        main_function: "간 건강에 도움을 줄 수 있음",
        sungsang: "고유의 향미가 있는 갈색의 타원형 정제",
    },
    Product {
        name: "저분자 피쉬 콜라겐",
        categories: &[Skin],
        form: Form::Powder,
        base_standard: "콜라겐 펩타이드 1,000mg / 1일 섭취량",
        main_function: "피부 보습·자외선에 의한 피부손상으로부터 피부 건강을 유지하는 데 도움을 줄 수 있음",
        sungsang: "흰색의 분말 스틱",
    },
    Product {
        name: "비타민C 1000",
        categories: &[Antioxidant],
        form: Form::Tablet,
        base_standard: "비타민C 1,000mg / 1일 섭취량",
        main_function: "결합조직 형성과 기능유지에 필요, 유해산소로부터 세포를 보호하는데 필요",
        sungsang: "흰색의 원형 정제",
    },
    Product {
        name: "6년근 홍삼정 스틱",
        categories: &[Fatigue],
        form: Form::Liquid,
        base_standard: "진세노사이드 Rg1, Rb1 및 Rg3의 합 15mg / 1일 섭취량",
        main_function: "면역력 증진·피로개선·혈소판 응집억제를 통한 혈액흐름·기억력 개선·항산화에 도움을 줄 수 있음",
        sungsang: "고유의 향미가 있는 흑갈색의 점조한 액상",
    },
    Product {
        name: "멀티비타민 미네랄",
        categories: &[Etc],
        form: Form::Tablet,
        base_standard: "비타민 11종, 미네랄 7종 / 1일 섭취량",
        main_function: "에너지 생성과 정상적인 면역기능에 필요",
        sungsang: "고유의 향미가 있는 주황색의 장방형 정제",
    },
    Product {
        name: "빌베리 블루베리",
        categories: &[Eye],
        form: Form::Capsule,
        base_standard: "빌베리 추출물 160mg / 1일 섭취량",
        main_function: "눈의 피로도 개선에 도움을 줄 수 있음",
        sungsang: "보라색의 경질캡슐",
    },
    Product {
        name: "아스타잔틴",
        categories: &[Eye, Antioxidant],
        form: Form::SoftCapsule,
        base_standard: "아스타잔틴 12mg / 1일 섭취량",
        main_function: "눈의 피로도 개선·항산화에 도움을 줄 수 있음",
        sungsang: "적갈색의 타원형 연질캡슐",
    },
    Product {
        name: "MSM 보스웰리아",
        categories: &[Bone],
        form: Form::Tablet,
        base_standard: "MSM 2,000mg / 1일 섭취량",
        main_function: "관절 및 연골 건강에 도움을 줄 수 있음",
        sungsang: "미색의 장방형 정제",
    },
    Product {
        name: "포스파티딜세린",
        categories: &[Brain],
        form: Form::SoftCapsule,
        base_standard: "포스파티딜세린 300mg / 1일 섭취량",
        main_function: "노화로 인해 저하된 인지력 개선·피부 보습에 도움을 줄 수 있음",
        sungsang: "갈색의 타원형 연질캡슐",
    },
    Product {
        name: "은행잎 추출물",
        categories: &[Brain, Fatigue],
        form: Form::Tablet,
        base_standard: "은행잎 플라보놀 배당체 28.8mg / 1일 섭취량",
        main_function: "기억력 개선·혈행 개선에 도움을 줄 수 있음",
        sungsang: "녹갈색의 원형 정제",
    },
    Product {
        name: "차전자피 식이섬유",
        categories: &[Intestine],
        form: Form::Powder,
        base_standard: "차전자피 식이섬유 5.1g / 1일 섭취량",
        main_function: "배변활동 원활·혈중 콜레스테롤 개선에 도움을 줄 수 있음",
        sungsang: "연갈색의 과립",
    },
    Product {
        name: "헛개나무 열매",
        categories: &[Liver],
        form: Form::Liquid,
        base_standard: "헛개나무과병추출분말 1.4g / 1일 섭취량",
        main_function: "알코올성 손상으로부터 간을 보호하는 데 도움을 줄 수 있음",
        sungsang: "갈색의 액상",
    },
    Product {
        name: "히알루론산",
        categories: &[Skin],
        form: Form::Capsule,
        base_standard: "히알루론산 120mg / 1일 섭취량",
        main_function: "피부 보습에 도움을 줄 수 있음",
        sungsang: "흰색의 경질캡슐",
    },
    Product {
        name: "코엔자임Q10",
        categories: &[Antioxidant, Fatigue],
        form: Form::SoftCapsule,
        base_standard: "코엔자임Q10 100mg / 1일 섭취량",
        main_function: "항산화·높은 혈압 감소에 도움을 줄 수 있음",
        sungsang: "주황색의 타원형 연질캡슐",
    },
    Product {
        name: "비타민B 컴플렉스",
        categories: &[Fatigue],
        form: Form::Tablet,
        base_standard: "비타민B1 50mg, 비타민B2 50mg, 비타민B6 50mg / 1일 섭취량",
        main_function: "체내 에너지 생성에 필요",
        sungsang: "노란색의 장방형 정제",
    },
    Product {
        name: "철분 엽산",
        categories: &[Fatigue, Etc],
        form: Form::Tablet,
        base_standard: "철 12mg, 엽산 400μg / 1일 섭취량",
        main_function: "체내 산소운반과 혈액생성에 필요, 세포와 혈액생성에 필요",
        sungsang: "적색의 원형 정제",
    },
    Product {
        name: "아연 셀레늄",
        categories: &[Antioxidant, Etc],
        form: Form::Tablet,
        base_standard: "아연 8.5mg, 셀레늄 55μg / 1일 섭취량",
        main_function: "정상적인 면역기능에 필요, 유해산소로부터 세포를 보호하는데 필요",
        sungsang: "회백색의 원형 정제",
    },
    Product {
        name: "쏘팔메토",
        categories: &[Etc],
        form: Form::SoftCapsule,
        base_standard: "쏘팔메토 열매 추출물 320mg / 1일 섭취량",
        main_function: "전립선 건강의 유지에 도움을 줄 수 있음",
        sungsang: "황갈색의 타원형 연질캡슐",
    },
    Product {
        name: "글루코사민 콘드로이친",
        categories: &[Bone, Etc],
        form: Form::Tablet,
        base_standard: "글루코사민 1,500mg / 1일 섭취량",
        main_function: "관절 및 연골 건강에 도움을 줄 수 있음",
        sungsang: "흰색의 장방형 정제",
    },
    Product {
        name: "비오틴 판토텐산",
        categories: &[Skin, Fatigue, Etc],
        form: Form::Tablet,
        base_standard: "비오틴 300μg, 판토텐산 5mg / 1일 섭취량",
        main_function: "지방, 탄수화물, 단백질 대사와 에너지 생성에 필요",
        sungsang: "흰색의 원형 정제",
    },
];

/// Brands. Two ASCII names keep case-insensitive search demonstrable.
const BRANDS: [&str; 16] = [
    "종근당",
    "뉴트리원",
    "고려은단",
    "안국건강",
    "일양약품",
    "한미양행",
    "얼라이브",
    "나우푸드",
    "정관장",
    "대웅제약",
    "솔가",
    "닥터린",
    "일동제약",
    "뉴트리코어",
    "GNC",
    "California Gold Nutrition",
];

const SERIES: [&str; 8] = [
    "골드",
    "플러스",
    "프리미엄",
    "맥스",
    "데일리",
    "포르테",
    "액티브",
    "베이직",
];

/// Sale rates in basis points, all with at most 3 decimals (0.05 … 0.5).
const SALE_RATES: [u16; 12] = [
    500, 1_000, 1_250, 1_500, 2_000, 2_500, 3_000, 3_330, 3_750, 4_000, 4_500, 5_000,
];

const SERVING_USE: &str = "특정질환, 특이체질, 알레르기 체질, 임산부 및 수유부는 섭취 전 전문가와 상담하십시오. \
이상사례 발생 시 섭취를 중단하고 전문가와 상담하십시오. 어린이의 손이 닿지 않는 곳에 보관하십시오.";

/// `count` demo items, the same ones every time.
pub fn demo_items(count: usize) -> Vec<NewItem> {
    (0..count).map(demo_item).collect()
}

/// The demo item at `index`.
pub fn demo_item(index: usize) -> NewItem {
    let product = &PRODUCTS[index % PRODUCTS.len()];
    // Brand and series move at different strides than the product so the combinations vary.
    let brand = BRANDS[(index * 7 + index / PRODUCTS.len()) % BRANDS.len()];
    let series = SERIES[(index / PRODUCTS.len() + index * 3) % SERIES.len()];
    let pieces = product.form.counts()[(index / 3) % 3];

    let product_name = format!(
        "{brand} {} {series} {pieces}{}",
        product.name,
        product.form.unit()
    );

    let mut categories = product.categories.to_vec();
    categories.sort();

    let discount_rate = if matches!(index % 5, 1 | 3) {
        let basis_points = SALE_RATES[(index / 5 + index / PRODUCTS.len()) % SALE_RATES.len()];
        DiscountRate::from_basis_points(basis_points).unwrap_or(DiscountRate::ZERO)
    } else {
        DiscountRate::ZERO
    };

    let registered_date = demo_epoch()
        .checked_add_days(Days::new(((index * 73) % 2_900) as u64))
        .unwrap_or_else(demo_epoch);

    NewItem {
        product_name,
        enterprise: brand.to_owned(),
        thumbnail: format!("https://static.pillivery.local/demo/items/{index:06}/thumbnail.jpg"),
        description_image: format!(
            "https://static.pillivery.local/demo/items/{index:06}/description.jpg"
        ),
        main_function: product.main_function.to_owned(),
        base_standard: product.base_standard.to_owned(),
        intake: product.form.intake().to_owned(),
        serving_use: SERVING_USE.to_owned(),
        preserve_period: "직사광선을 피하고 서늘하고 건조한 곳에 보관하십시오.".to_owned(),
        distribution_period: format!("제조일로부터 {}개월", [24, 18, 36][index % 3]),
        statement_number: format!("{}{:07}", 2004 + index % 20, index + 1),
        registered_date,
        sungsang: product.sungsang.to_owned(),
        categories,
        origin_price: demo_origin_price(index),
        discount_rate,
    }
}

/// Distinct for every index: within each block of 100 000, `100·p + b` where `p` runs through a
/// permutation of 0..1000 (so neighbouring items are not priced alike) and `b = ⌊i/1000⌋ mod 100`;
/// the pair `(p, b)` is unique in the block and `100·p + b < 100 000`. The first 1000 items are
/// priced in round hundreds from 9 900 to 109 800 원.
pub fn demo_origin_price(index: usize) -> i64 {
    let index = index as i64;
    // 389 is coprime with 1000, so this is a permutation of 0..1000.
    let spread = (index % 1_000 * 389 + 211) % 1_000;
    let within_block = 100 * spread + (index / 1_000) % 100;
    9_900 + within_block + 100_000 * (index / 100_000)
}

fn demo_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2018, 1, 1).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn is_deterministic() {
        assert_eq!(demo_items(300), demo_items(300));
        assert_eq!(demo_items(50)[..], demo_items(300)[..50]);
    }

    #[test]
    fn nine_items_cover_every_category() {
        let covered: HashSet<Category> = demo_items(9)
            .into_iter()
            .flat_map(|item| item.categories)
            .collect();
        assert_eq!(covered.len(), Category::ALL.len());
    }

    #[test]
    fn every_item_is_valid_and_plausible() {
        for (index, item) in demo_items(2_000).into_iter().enumerate() {
            assert!((1..=3).contains(&item.categories.len()), "{index}");
            let mut sorted = item.categories.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted, item.categories, "sorted and distinct: {index}");
            assert!(item.product_name.contains(&item.enterprise));
            assert!(item.product_name.chars().count() <= 255);
            for text in [
                &item.thumbnail,
                &item.description_image,
                &item.main_function,
                &item.base_standard,
                &item.intake,
                &item.serving_use,
                &item.preserve_period,
                &item.distribution_period,
                &item.statement_number,
                &item.sungsang,
            ] {
                assert!(!text.is_empty(), "{index}");
            }
            assert!(item.origin_price >= 9_900);
            let price = item.price();
            assert_eq!(price.real + price.discount, item.origin_price);
            assert!(item.registered_date >= demo_epoch());
            assert!(item.registered_date.format("%Y").to_string().as_str() < "2026");
        }
    }

    #[test]
    fn about_forty_percent_are_on_sale_at_three_decimal_rates() {
        let items = demo_items(1_000);
        let on_sale: Vec<DiscountRate> = items
            .iter()
            .map(|item| item.discount_rate)
            .filter(|rate| rate.is_discounted())
            .collect();
        assert_eq!(on_sale.len(), 400);
        let distinct_rates: HashSet<u16> = on_sale.iter().map(|r| r.basis_points()).collect();
        assert_eq!(distinct_rates.len(), SALE_RATES.len(), "every rate is used");
        for rate in on_sale {
            assert!((500..=5_000).contains(&rate.basis_points()));
            assert_eq!(rate.basis_points() % 10, 0);
        }
    }

    #[test]
    fn forty_thousand_items_have_distinct_prices_and_statement_numbers() {
        let items = demo_items(40_000);
        assert_eq!(items.len(), 40_000);
        let prices: HashSet<i64> = items.iter().map(|item| item.origin_price).collect();
        assert_eq!(prices.len(), items.len());
        let statements: HashSet<&str> = items
            .iter()
            .map(|item| item.statement_number.as_str())
            .collect();
        assert_eq!(statements.len(), items.len());
        let brands: HashSet<&str> = items.iter().map(|item| item.enterprise.as_str()).collect();
        assert_eq!(brands.len(), BRANDS.len());
    }

    #[test]
    fn prices_stay_distinct_past_a_hundred_thousand() {
        let prices: HashSet<i64> = (95_000..205_000).map(demo_origin_price).collect();
        assert_eq!(prices.len(), 110_000);
        assert_eq!(demo_origin_price(0), 9_900 + 21_100);
    }
}

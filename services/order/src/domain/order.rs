//! Orders: the checkout request's rules, the price snapshot, the idempotency identity of a
//! request, and the guarded status machine (SPEC section 5).
//!
//! ```text
//! REQUEST ──pay──▶ PAID ──request refund──▶ REFUND_PENDING ──refund completed──▶ REFUNDED
//!    └──cancel (owner, or unpaid for 30 min)──▶ CANCELED
//! ```
//!
//! Every other transition is refused ([`InvalidTransition`], 422 `INVALID_ORDER_STATE`): paying
//! a paid order, refunding twice, cancelling a refunded or a cancelled order. None is silently
//! idempotent; only the internal calls that carry an identity (`MarkOrderPaid` with the same
//! payment id) recognise their own repeat, and that is decided by the caller of this module.
//!
//! Order lines: 1 to 50, each item at most once per kind (one normal line and one subscription
//! line of the same item may sit side by side, as they do in the two carts; two normal lines of
//! one item are refused on the second `itemId` so the client merges them).

use std::collections::{HashMap, HashSet};

use pillivery_platform::error::{FieldViolation, Text};
use serde::Serialize;

use super::cart::CartKind;
use super::line::{
    ItemSnapshot, MAX_LINES, check_item_id, check_period_days, check_quantity, checked,
};
use super::money::{AmountOverflow, Totals, UnitPrice, line_amount};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Request,
    Paid,
    Canceled,
    RefundPending,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Request,
        OrderStatus::Paid,
        OrderStatus::Canceled,
        OrderStatus::RefundPending,
        OrderStatus::Refunded,
    ];

    /// As stored and as spelled in the SPEC.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Request => "REQUEST",
            OrderStatus::Paid => "PAID",
            OrderStatus::Canceled => "CANCELED",
            OrderStatus::RefundPending => "REFUND_PENDING",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(value: &str) -> Option<OrderStatus> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Where `transition` leads from here, if it is drawn in the machine.
    pub fn after(self, transition: OrderTransition) -> Result<OrderStatus, InvalidTransition> {
        use OrderStatus::*;
        use OrderTransition::*;
        match (self, transition) {
            (Request, Pay) => Ok(Paid),
            (Request, Cancel) => Ok(Canceled),
            (Paid, RequestRefund) => Ok(RefundPending),
            (RefundPending, CompleteRefund) => Ok(Refunded),
            (from, transition) => Err(InvalidTransition { from, transition }),
        }
    }

    /// What the owner's "cancel" means in this status: an unpaid order is cancelled, a paid one
    /// asks for a refund.
    pub fn owner_cancel(self) -> Result<OrderTransition, InvalidTransition> {
        match self {
            OrderStatus::Request => Ok(OrderTransition::Cancel),
            OrderStatus::Paid => Ok(OrderTransition::RequestRefund),
            from => Err(InvalidTransition {
                from,
                transition: OrderTransition::Cancel,
            }),
        }
    }
}

/// The arrows of the status machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderTransition {
    Pay,
    Cancel,
    RequestRefund,
    CompleteRefund,
}

impl OrderTransition {
    pub const ALL: [OrderTransition; 4] = [
        OrderTransition::Pay,
        OrderTransition::Cancel,
        OrderTransition::RequestRefund,
        OrderTransition::CompleteRefund,
    ];

    /// The only status this transition may start from.
    pub fn from(self) -> OrderStatus {
        match self {
            OrderTransition::Pay | OrderTransition::Cancel => OrderStatus::Request,
            OrderTransition::RequestRefund => OrderStatus::Paid,
            OrderTransition::CompleteRefund => OrderStatus::RefundPending,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an order in {from:?} cannot {transition:?}")]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub transition: OrderTransition,
}

/// A checkout request as sent, before any rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInput {
    pub lines: Vec<OrderLineInput>,
    pub from_cart: bool,
    pub receiver: Option<ReceiverInput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineInput {
    pub item_id: i64,
    pub quantity: i32,
    pub period_days: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverInput {
    pub name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
}

impl OrderInput {
    /// The request's identity for idempotency: SHA-256 (hex) of its canonical JSON. Two
    /// requests hash alike exactly when every field is equal (the order of lines counts: it is
    /// the order's order).
    pub fn request_hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical);
        digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Who receives the parcel: four non-blank fields, the phone normalised as at sign-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receiver {
    pub name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
}

/// A line that passed the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderLineRequest {
    pub item_id: i64,
    pub quantity: i32,
    pub period_days: Option<i32>,
}

/// A checkout request that passed every rule; prices are not known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidOrder {
    pub lines: Vec<OrderLineRequest>,
    pub from_cart: bool,
    pub receiver: Receiver,
}

impl ValidOrder {
    /// The distinct item ids, in line order, to ask the catalog for.
    pub fn item_ids(&self) -> Vec<i64> {
        let mut seen = HashSet::new();
        self.lines
            .iter()
            .map(|line| line.item_id)
            .filter(|item_id| seen.insert(*item_id))
            .collect()
    }
}

pub const RECEIVER_NAME_MAX: usize = 50;
pub const RECEIVER_CITY_MAX: usize = 100;
pub const RECEIVER_DETAIL_ADDRESS_MAX: usize = 255;

/// Checks a checkout request, reporting every violation at once with the JSON path the client
/// sent (`lines[0].quantity`, `receiver.phone`).
pub fn validate(input: &OrderInput) -> Result<ValidOrder, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    if input.lines.is_empty() {
        violations.push(FieldViolation::new(
            "lines",
            serde_json::json!([]),
            Text::new(
                "주문할 상품을 1개 이상 선택해야 합니다.",
                "must hold at least one line",
            ),
        ));
    } else if input.lines.len() > MAX_LINES {
        violations.push(FieldViolation::new(
            "lines",
            serde_json::Value::from(input.lines.len()),
            Text::new(
                "한 주문에는 최대 50개 상품을 담을 수 있습니다.",
                "must hold at most 50 lines",
            ),
        ));
    }
    let mut lines = Vec::with_capacity(input.lines.len());
    let mut seen: HashSet<(i64, CartKind)> = HashSet::new();
    for (index, line) in input.lines.iter().enumerate() {
        let item_id = checked(
            &mut violations,
            format!("lines[{index}].itemId"),
            line.item_id,
            check_item_id,
        );
        if item_id.is_some() && !seen.insert((line.item_id, CartKind::of_line(line.period_days))) {
            violations.push(FieldViolation::new(
                format!("lines[{index}].itemId"),
                line.item_id.into(),
                Text::new(
                    "같은 상품이 중복되었습니다. 수량을 합쳐 주세요.",
                    "appears twice; merge the lines into one quantity",
                ),
            ));
        }
        let quantity = checked(
            &mut violations,
            format!("lines[{index}].quantity"),
            line.quantity,
            check_quantity,
        );
        let period_days = match line.period_days {
            None => Some(None),
            Some(days) => checked(
                &mut violations,
                format!("lines[{index}].periodDays"),
                days,
                check_period_days,
            )
            .map(Some),
        };
        if let (Some(item_id), Some(quantity), Some(period_days)) = (item_id, quantity, period_days)
        {
            lines.push(OrderLineRequest {
                item_id,
                quantity,
                period_days,
            });
        }
    }
    let receiver = match &input.receiver {
        None => {
            violations.push(FieldViolation::new(
                "receiver",
                serde_json::Value::Null,
                Text::new("받는 사람 정보가 필요합니다.", "is required"),
            ));
            None
        }
        Some(receiver) => validate_receiver(receiver, &mut violations),
    };
    match receiver {
        Some(receiver) if violations.is_empty() => Ok(ValidOrder {
            lines,
            from_cart: input.from_cart,
            receiver,
        }),
        _ => Err(violations),
    }
}

fn validate_receiver(
    input: &ReceiverInput,
    violations: &mut Vec<FieldViolation>,
) -> Option<Receiver> {
    let mut text = |field: &str, value: &str, max: usize| -> Option<String> {
        let trimmed = value.trim();
        let reason = if trimmed.is_empty() {
            Text::new("공백일 수 없습니다.", "must not be blank")
        } else if trimmed.chars().count() > max {
            Text::owned(
                format!("{max}자 이하여야 합니다."),
                format!("must be at most {max} characters"),
            )
        } else {
            return Some(trimmed.to_owned());
        };
        violations.push(FieldViolation::new(
            format!("receiver.{field}"),
            serde_json::Value::from(value),
            reason,
        ));
        None
    };
    let name = text("name", &input.name, RECEIVER_NAME_MAX);
    let city = text("city", &input.city, RECEIVER_CITY_MAX);
    let detail_address = text(
        "detailAddress",
        &input.detail_address,
        RECEIVER_DETAIL_ADDRESS_MAX,
    );
    let phone = normalize_phone(input.phone.trim());
    if phone.is_none() {
        violations.push(FieldViolation::new(
            "receiver.phone",
            serde_json::Value::from(input.phone.as_str()),
            Text::new(
                "휴대폰 번호 형식이 올바르지 않습니다. (예: 010-1234-5678)",
                "must be a Korean mobile number such as 010-1234-5678",
            ),
        ));
    }
    Some(Receiver {
        name: name?,
        phone: phone?,
        city: city?,
        detail_address: detail_address?,
    })
}

/// `^01[016789]-?\d{3,4}-?\d{4}$`, normalised to `01X-MMMM-LLLL` (or `01X-MMM-LLLL`): the
/// rule the user service applies at sign-up (SPEC section 3), repeated here because services
/// share contracts, not code.
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

/// The longest `Idempotency-Key` accepted (the gateway's limit too).
pub const IDEMPOTENCY_KEY_MAX: usize = 200;

/// The `idempotency-key` metadata: required, 1 to 200 characters.
pub fn check_idempotency_key(key: Option<&str>) -> Result<String, Vec<FieldViolation>> {
    match key {
        Some(key) if !key.trim().is_empty() && key.chars().count() <= IDEMPOTENCY_KEY_MAX => {
            Ok(key.to_owned())
        }
        other => Err(vec![FieldViolation::new(
            "Idempotency-Key",
            other.map_or(serde_json::Value::Null, serde_json::Value::from),
            Text::new(
                "Idempotency-Key 헤더가 필요합니다 (1~200자).",
                "the Idempotency-Key header is required (1 to 200 characters)",
            ),
        )]),
    }
}

/// One line of a new order, with the catalog's names and prices of the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrderLine {
    pub item_id: i64,
    pub product_name: String,
    pub thumbnail: String,
    pub quantity: i32,
    pub period_days: Option<i32>,
    pub price: UnitPrice,
    pub line_total: i64,
}

/// An order ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: i64,
    pub lines: Vec<NewOrderLine>,
    pub totals: Totals,
    pub receiver: Receiver,
    pub from_cart: bool,
}

/// Why an order cannot be priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The catalog does not have (or has deleted) this item.
    #[error("item {0} is not in the catalog")]
    MissingItem(i64),
    #[error(transparent)]
    Overflow(#[from] AmountOverflow),
}

/// Prices `order` with the catalog's answer: names and unit prices are copied into the lines.
pub fn snapshot(
    user_id: i64,
    order: &ValidOrder,
    items: &HashMap<i64, ItemSnapshot>,
) -> Result<NewOrder, SnapshotError> {
    let mut lines = Vec::with_capacity(order.lines.len());
    for line in &order.lines {
        let item = items
            .get(&line.item_id)
            .ok_or(SnapshotError::MissingItem(line.item_id))?;
        lines.push(NewOrderLine {
            item_id: line.item_id,
            product_name: item.product_name.clone(),
            thumbnail: item.thumbnail.clone(),
            quantity: line.quantity,
            period_days: line.period_days,
            price: item.price,
            line_total: line_amount(line.quantity, item.price.real())?,
        });
    }
    let totals = Totals::of(lines.iter().map(|line| (line.quantity, line.price)))?;
    Ok(NewOrder {
        user_id,
        lines,
        totals,
        receiver: order.receiver.clone(),
        from_cart: order.from_cart,
    })
}

/// The short name a payment page shows: the first product, and how many others
/// ("비타민C 외 2건").
pub fn payment_item_name(product_names: &[&str]) -> String {
    match product_names {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, rest @ ..] => format!("{first} 외 {}건", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    fn receiver() -> ReceiverInput {
        ReceiverInput {
            name: "김수령".into(),
            phone: "01012345678".into(),
            city: "서울".into(),
            detail_address: "강남구 1".into(),
        }
    }

    fn line(item_id: i64, quantity: i32, period_days: Option<i32>) -> OrderLineInput {
        OrderLineInput {
            item_id,
            quantity,
            period_days,
        }
    }

    #[test]
    fn every_drawn_transition_and_only_those() {
        use OrderStatus::*;
        use OrderTransition::*;
        let allowed = [
            (Request, Pay, Paid),
            (Request, Cancel, Canceled),
            (Paid, RequestRefund, RefundPending),
            (RefundPending, CompleteRefund, Refunded),
        ];
        for from in OrderStatus::ALL {
            for transition in OrderTransition::ALL {
                let expected = allowed
                    .iter()
                    .find(|(a, t, _)| *a == from && *t == transition)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => {
                        assert_eq!(from.after(transition), Ok(to));
                        assert_eq!(transition.from(), from);
                    }
                    None => assert_eq!(
                        from.after(transition),
                        Err(InvalidTransition { from, transition }),
                        "{from:?} {transition:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn owner_cancel_cancels_or_asks_for_a_refund() {
        use OrderStatus::*;
        assert_eq!(Request.owner_cancel(), Ok(OrderTransition::Cancel));
        assert_eq!(Paid.owner_cancel(), Ok(OrderTransition::RequestRefund));
        for from in [Canceled, RefundPending, Refunded] {
            assert!(from.owner_cancel().is_err(), "{from:?}");
        }
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("request"), None);
    }

    #[test]
    fn a_good_order_passes_with_a_normalised_phone() {
        let input = OrderInput {
            lines: vec![line(1, 2, None), line(1, 1, Some(30)), line(2, 99, None)],
            from_cart: true,
            receiver: Some(ReceiverInput {
                name: "  김수령 ".into(),
                ..receiver()
            }),
        };
        let order = validate(&input).unwrap();
        assert_eq!(order.receiver.phone, "010-1234-5678");
        assert_eq!(order.receiver.name, "김수령");
        assert_eq!(order.lines.len(), 3);
        assert_eq!(order.item_ids(), [1, 2]);
        assert!(order.from_cart);
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let table: Vec<(OrderInput, Vec<&str>)> = vec![
            (
                OrderInput {
                    lines: vec![],
                    from_cart: false,
                    receiver: None,
                },
                vec!["lines", "receiver"],
            ),
            (
                OrderInput {
                    lines: vec![line(0, 0, Some(29)), line(5, 100, Some(366))],
                    from_cart: false,
                    receiver: Some(ReceiverInput {
                        name: " ".into(),
                        phone: "02-123-4567".into(),
                        city: "".into(),
                        detail_address: "\t".into(),
                    }),
                },
                vec![
                    "lines[0].itemId",
                    "lines[0].quantity",
                    "lines[0].periodDays",
                    "lines[1].quantity",
                    "lines[1].periodDays",
                    "receiver.name",
                    "receiver.city",
                    "receiver.detailAddress",
                    "receiver.phone",
                ],
            ),
            (
                OrderInput {
                    lines: vec![line(1, 1, None), line(2, 1, None), line(1, 3, None)],
                    from_cart: false,
                    receiver: Some(receiver()),
                },
                vec!["lines[2].itemId"],
            ),
            (
                OrderInput {
                    lines: (1..=51).map(|item_id| line(item_id, 1, None)).collect(),
                    from_cart: false,
                    receiver: Some(receiver()),
                },
                vec!["lines"],
            ),
            (
                OrderInput {
                    lines: vec![line(1, 1, None)],
                    from_cart: false,
                    receiver: Some(ReceiverInput {
                        name: "가".repeat(51),
                        ..receiver()
                    }),
                },
                vec!["receiver.name"],
            ),
        ];
        for (input, expected) in table {
            let violations = validate(&input).unwrap_err();
            assert_eq!(fields(&violations), expected, "{input:?}");
        }
        let fifty: Vec<OrderLineInput> = (1..=50).map(|item_id| line(item_id, 1, None)).collect();
        assert!(
            validate(&OrderInput {
                lines: fifty,
                from_cart: false,
                receiver: Some(receiver())
            })
            .is_ok()
        );
    }

    #[test]
    fn phones_follow_the_sign_up_rule() {
        let table = [
            ("010-1234-5678", Some("010-1234-5678")),
            ("01012345678", Some("010-1234-5678")),
            ("011-123-4567", Some("011-123-4567")),
            ("0111234567", Some("011-123-4567")),
            ("019-9999-0000", Some("019-9999-0000")),
            ("012-1234-5678", None),
            ("02-123-4567", None),
            ("010-12-5678", None),
            ("010-12345-678", None),
            ("010--1234-5678", None),
            ("", None),
            ("010-abcd-5678", None),
        ];
        for (value, expected) in table {
            assert_eq!(normalize_phone(value).as_deref(), expected, "{value:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_required_and_bounded() {
        assert_eq!(check_idempotency_key(Some("k-1")), Ok("k-1".into()));
        assert!(check_idempotency_key(Some(&"k".repeat(200))).is_ok());
        for bad in [None, Some(""), Some("  ")] {
            assert_eq!(
                check_idempotency_key(bad).unwrap_err()[0].field,
                "Idempotency-Key"
            );
        }
        assert!(check_idempotency_key(Some(&"k".repeat(201))).is_err());
    }

    #[test]
    fn hashes_tell_bodies_apart() {
        let base = OrderInput {
            lines: vec![line(1, 2, None)],
            from_cart: false,
            receiver: Some(receiver()),
        };
        assert_eq!(base.request_hash(), base.clone().request_hash());
        assert_eq!(base.request_hash().len(), 64);
        let variants = [
            OrderInput {
                lines: vec![line(1, 3, None)],
                ..base.clone()
            },
            OrderInput {
                lines: vec![line(1, 2, Some(30))],
                ..base.clone()
            },
            OrderInput {
                from_cart: true,
                ..base.clone()
            },
            OrderInput {
                receiver: Some(ReceiverInput {
                    city: "부산".into(),
                    ..receiver()
                }),
                ..base.clone()
            },
            OrderInput {
                receiver: None,
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.request_hash(), base.request_hash(), "{variant:?}");
        }
    }

    fn item(item_id: i64, origin: i64, discount: i64) -> (i64, ItemSnapshot) {
        (
            item_id,
            ItemSnapshot {
                item_id,
                product_name: format!("item {item_id}"),
                thumbnail: format!("thumb {item_id}"),
                price: UnitPrice::new(origin, discount).unwrap(),
            },
        )
    }

    #[test]
    fn snapshots_copy_names_and_prices() {
        let order = validate(&OrderInput {
            lines: vec![line(1, 2, None), line(2, 1, Some(30))],
            from_cart: true,
            receiver: Some(receiver()),
        })
        .unwrap();
        let items = HashMap::from([item(1, 10_000, 1_000), item(2, 5_000, 0)]);
        let new_order = snapshot(7, &order, &items).unwrap();
        assert_eq!(new_order.user_id, 7);
        assert_eq!(new_order.lines[0].product_name, "item 1");
        assert_eq!(new_order.lines[0].line_total, 18_000);
        assert_eq!(new_order.lines[1].period_days, Some(30));
        assert_eq!(
            new_order.totals,
            Totals {
                quantity: 3,
                origin: 25_000,
                discount: 2_000,
                price: 23_000
            }
        );
        let missing = HashMap::from([item(1, 10_000, 0)]);
        assert_eq!(
            snapshot(7, &order, &missing),
            Err(SnapshotError::MissingItem(2))
        );
    }

    #[test]
    fn payment_names_count_the_others() {
        assert_eq!(payment_item_name(&[]), "");
        assert_eq!(payment_item_name(&["비타민C"]), "비타민C");
        assert_eq!(
            payment_item_name(&["비타민C", "오메가3", "루테인"]),
            "비타민C 외 2건"
        );
    }

    proptest! {
        /// Whatever the path, an order only ever moves along the drawn arrows, and each
        /// terminal status refuses everything.
        #[test]
        fn random_walks_stay_on_the_machine(steps in proptest::collection::vec(0usize..4, 0..20)) {
            let mut status = OrderStatus::Request;
            for step in steps {
                let transition = OrderTransition::ALL[step];
                match status.after(transition) {
                    Ok(next) => {
                        prop_assert_eq!(transition.from(), status);
                        status = next;
                    }
                    Err(error) => prop_assert_eq!(error.from, status),
                }
            }
            if matches!(status, OrderStatus::Canceled | OrderStatus::Refunded) {
                for transition in OrderTransition::ALL {
                    prop_assert!(status.after(transition).is_err());
                }
            }
        }
    }
}

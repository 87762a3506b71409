//! The buyer's payment page at `next_redirect_pc_url` (and its mobile and app twins): what
//! KakaoPay's own page does for a buyer, reduced to three buttons — approve, cancel, fail.
//!
//! Each button is a plain GET form that reloads the page with `auto=<choice>`, so a browser and
//! a headless test take the same path: `?auto=approve|cancel|fail` answers 302 to
//! `approval_url?pg_token=…`, `cancel_url` or `fail_url`. No JavaScript, no cookies.

use crate::books::{BuyerChoice, CheckoutView, PaymentStatus};

/// Reads an `auto` value.
pub fn parse_choice(value: &str) -> Option<BuyerChoice> {
    match value {
        "approve" => Some(BuyerChoice::Approve),
        "cancel" => Some(BuyerChoice::Cancel),
        "fail" => Some(BuyerChoice::Fail),
        _ => None,
    }
}

/// Splits `auto=…` off a path segment. The issue phrases the test hook as appending
/// `&auto=approve` to `next_redirect_pc_url`; that URL has no query, so a client that appends it
/// literally puts it in the path, and this keeps that working alongside `?auto=approve`.
pub fn split_auto(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once('&') {
        Some((clean, rest)) => {
            let auto = rest.split('&').find_map(|pair| pair.strip_prefix("auto="));
            (clean, auto)
        }
        None => (segment, None),
    }
}

/// The page for a payment.
pub fn page(view: &CheckoutView, page_path: &str) -> String {
    let kind = if view.subscription {
        "Subscription (the first payment registers a recurring payment key)"
    } else {
        "One-time payment"
    };
    let actions = if matches!(
        view.status,
        PaymentStatus::Ready | PaymentStatus::AuthPassword
    ) {
        let button = |choice: &str, label: &str| {
            format!(
                "<form method=\"get\" action=\"{action}\"><input type=\"hidden\" name=\"auto\" value=\"{choice}\"><button type=\"submit\" id=\"{choice}\">{label}</button></form>",
                action = escape(page_path),
            )
        };
        format!(
            "{}{}{}",
            button("approve", "Approve payment"),
            button("cancel", "Cancel"),
            button("fail", "Fail (simulate a failed payment)")
        )
    } else {
        format!(
            "<p>This payment is {} and can no longer be changed here.</p>",
            view.status.as_str()
        )
    };
    document(
        "Pillivery payment sandbox",
        &format!(
            "<h1>Payment sandbox</h1>\
             <p class=\"note\">A KakaoPay-compatible sandbox: no real money moves.</p>\
             <dl><dt>Item</dt><dd>{item}</dd>\
             <dt>Quantity</dt><dd>{quantity}</dd>\
             <dt>Amount</dt><dd>{amount} KRW</dd>\
             <dt>Kind</dt><dd>{kind}</dd>\
             <dt>Transaction</dt><dd><code>{tid}</code> ({status})</dd></dl>\
             <div class=\"actions\">{actions}</div>",
            item = escape(&view.item_name),
            quantity = view.quantity,
            amount = view.total_amount,
            tid = escape(&view.tid),
            status = view.status.as_str(),
        ),
    )
}

/// A page that says why nothing can be done.
pub fn refusal(message: &str) -> String {
    document(
        "Pillivery payment sandbox",
        &format!("<h1>Payment sandbox</h1><p>{}</p>", escape(message)),
    )
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}\
         .note{{color:#666}}dt{{font-weight:600}}dd{{margin:0 0 .5rem}}\
         .actions form{{display:inline-block;margin:.25rem}}\
         button{{font-size:1rem;padding:.5rem 1rem}}#approve{{background:#fee500}}\
         </style></head><body>{body}</body></html>"
    )
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: PaymentStatus) -> CheckoutView {
        CheckoutView {
            tid: "T1".into(),
            item_name: "<b>Omega-3</b> & co".into(),
            quantity: 2,
            total_amount: 25_800,
            subscription: false,
            status,
        }
    }

    #[test]
    fn a_pending_payment_offers_three_choices_and_escapes_its_item() {
        let html = page(&view(PaymentStatus::Ready), "/checkout/T1");
        for choice in ["approve", "cancel", "fail"] {
            assert!(
                html.contains(&format!("name=\"auto\" value=\"{choice}\"")),
                "{choice}"
            );
        }
        assert!(html.contains("action=\"/checkout/T1\""));
        assert!(html.contains("&lt;b&gt;Omega-3&lt;/b&gt; &amp; co"));
        assert!(html.contains("25800 KRW"));
        assert!(!html.contains("<b>Omega-3"));
    }

    #[test]
    fn a_finished_payment_offers_none() {
        let html = page(&view(PaymentStatus::SuccessPayment), "/checkout/T1");
        assert!(!html.contains("name=\"auto\""));
        assert!(html.contains("SUCCESS_PAYMENT"));
    }

    #[test]
    fn auto_is_read_from_a_query_written_into_the_path() {
        assert_eq!(split_auto("T1"), ("T1", None));
        assert_eq!(split_auto("T1&auto=approve"), ("T1", Some("approve")));
        assert_eq!(split_auto("T1&x=1&auto=fail"), ("T1", Some("fail")));
        assert_eq!(split_auto("mobile&auto=cancel"), ("mobile", Some("cancel")));
        assert_eq!(parse_choice("approve"), Some(BuyerChoice::Approve));
        assert_eq!(parse_choice("Approve"), None);
    }
}

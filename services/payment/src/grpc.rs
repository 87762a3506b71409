//! The payment service's gRPC surface: contract messages ⇄ the flows in `payments`, identity
//! from the verified token, nothing else.

use std::sync::Arc;

use pillivery_platform::auth::{Caller, TokenVerifier, caller_from_request};
use pillivery_platform::error::Locale;
use pillivery_proto::payment as pb;
use tonic::{Request, Response, Status};

use crate::domain::{AbandonKind, PaymentStatus};
use crate::error::PaymentError;
use crate::payments::{ChargeAnswer, ChargeInput, Payments, Redirect};
use crate::store::PaymentRecord;

type Answer<T> = Result<Response<T>, Status>;

fn failure(locale: Locale) -> impl FnOnce(PaymentError) -> Status {
    move |error| error.into_api_error().into_status(locale)
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn status(status: PaymentStatus) -> pb::PaymentStatus {
    match status {
        PaymentStatus::Ready => pb::PaymentStatus::Ready,
        PaymentStatus::Approved => pb::PaymentStatus::Approved,
        PaymentStatus::Canceled => pb::PaymentStatus::Canceled,
        PaymentStatus::Failed => pb::PaymentStatus::Failed,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
    }
}

fn payment(record: &PaymentRecord, pg: Option<serde_json::Value>) -> pb::Payment {
    pb::Payment {
        order_id: record.order_id,
        tid: record.tid.clone(),
        status: status(record.status) as i32,
        amount: record.amount,
        approved_at: record.approved_at.map(timestamp),
        canceled_at: record.canceled_at.map(timestamp),
        pg: pg.and_then(|value| match json_to_struct_value(value) {
            prost_types::value::Kind::StructValue(object) => Some(object),
            _ => None,
        }),
    }
}

fn json_to_struct_value(value: serde_json::Value) -> prost_types::value::Kind {
    use prost_types::value::Kind;
    match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items
                .into_iter()
                .map(|item| prost_types::Value {
                    kind: Some(json_to_struct_value(item)),
                })
                .collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(name, item)| {
                    (
                        name,
                        prost_types::Value {
                            kind: Some(json_to_struct_value(item)),
                        },
                    )
                })
                .collect(),
        }),
    }
}

fn redirect(answer: Redirect) -> pb::PaymentRedirect {
    pb::PaymentRedirect {
        redirect_url: answer.redirect_url,
        payment: Some(payment(&answer.payment, None)),
    }
}

/// `pillivery.payment.v1.PaymentService`: the customer's payment and the PG's redirects.
pub struct PaymentGrpc {
    payments: Arc<Payments>,
    verifier: TokenVerifier,
}

impl PaymentGrpc {
    pub fn new(payments: Arc<Payments>, verifier: TokenVerifier) -> Self {
        Self { payments, verifier }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, Locale), Status> {
        let locale = Locale::from_metadata(request.metadata());
        Ok((caller_from_request(&self.verifier, request)?, locale))
    }
}

#[tonic::async_trait]
impl pb::payment_service_server::PaymentService for PaymentGrpc {
    async fn ready_payment(
        &self,
        request: Request<pb::ReadyPaymentRequest>,
    ) -> Answer<pb::ReadyPaymentResponse> {
        let (caller, locale) = self.caller(&request)?;
        // Forwarded by the gateway from the `Idempotency-Key` header (required on this route).
        let key = request
            .metadata()
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|key| !key.is_empty() && key.len() <= 200)
            .map(str::to_owned);
        let order_id = request.into_inner().order_id;
        let record = self
            .payments
            .ready(&caller, order_id, key.as_deref())
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::ReadyPaymentResponse {
            tid: record.tid,
            next_redirect_pc_url: record.next_redirect_pc_url,
            next_redirect_mobile_url: record.next_redirect_mobile_url,
            next_redirect_app_url: record.next_redirect_app_url,
            created_at: Some(timestamp(record.created_at)),
        }))
    }

    async fn approve_payment(
        &self,
        request: Request<pb::ApprovePaymentRequest>,
    ) -> Answer<pb::PaymentRedirect> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let answer = self
            .payments
            .approve(request.order_id, &request.pg_token)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(redirect(answer)))
    }

    async fn cancel_payment(
        &self,
        request: Request<pb::AbandonPaymentRequest>,
    ) -> Answer<pb::PaymentRedirect> {
        let locale = Locale::from_metadata(request.metadata());
        let answer = self
            .payments
            .abandon(request.into_inner().order_id, AbandonKind::Cancel)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(redirect(answer)))
    }

    async fn fail_payment(
        &self,
        request: Request<pb::AbandonPaymentRequest>,
    ) -> Answer<pb::PaymentRedirect> {
        let locale = Locale::from_metadata(request.metadata());
        let answer = self
            .payments
            .abandon(request.into_inner().order_id, AbandonKind::Fail)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(redirect(answer)))
    }

    async fn get_payment(&self, request: Request<pb::GetPaymentRequest>) -> Answer<pb::Payment> {
        let (caller, locale) = self.caller(&request)?;
        let view = self
            .payments
            .get(&caller, request.into_inner().order_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(payment(&view.payment, view.pg)))
    }
}

/// `pillivery.payment.v1.PaymentInternalService`: for the scheduler and the order service.
/// No token: reachable only on the fleet's network, never bound to REST.
pub struct PaymentInternalGrpc {
    payments: Arc<Payments>,
}

impl PaymentInternalGrpc {
    pub fn new(payments: Arc<Payments>) -> Self {
        Self { payments }
    }
}

#[tonic::async_trait]
impl pb::payment_internal_service_server::PaymentInternalService for PaymentInternalGrpc {
    async fn charge_subscription(
        &self,
        request: Request<pb::ChargeSubscriptionRequest>,
    ) -> Answer<pb::ChargeSubscriptionResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let input = ChargeInput {
            subscription_id: request.subscription_id,
            cycle: request.cycle,
            amount: request.amount,
            user_id: request.user_id,
            origin_order_id: request.origin_order_id,
            item_name: request.item_name,
            quantity: request.quantity,
            attempt: request.attempt,
        };
        let answer = self
            .payments
            .charge(&input)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(match answer {
            ChargeAnswer::Charged { tid, charged_at } => pb::ChargeSubscriptionResponse {
                outcome: pb::ChargeOutcome::Charged as i32,
                tid,
                decline_code: String::new(),
                decline_message: String::new(),
                charged_at: Some(timestamp(charged_at)),
            },
            ChargeAnswer::Declined { code, message } => pb::ChargeSubscriptionResponse {
                outcome: pb::ChargeOutcome::Declined as i32,
                tid: String::new(),
                decline_code: code,
                decline_message: message,
                charged_at: None,
            },
        }))
    }

    async fn refund(&self, request: Request<pb::RefundRequest>) -> Answer<pb::RefundResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let answer = self
            .payments
            .refund(request.into_inner().order_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::RefundResponse {
            refunded_amount: answer.refunded_amount,
            refunded_at: Some(timestamp(answer.refunded_at)),
        }))
    }

    async fn inactivate_subscription(
        &self,
        request: Request<pb::InactivateSubscriptionRequest>,
    ) -> Answer<pb::InactivateSubscriptionResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let key_inactive = self
            .payments
            .inactivate_subscription(request.subscription_id, request.origin_order_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::InactivateSubscriptionResponse {
            key_inactive,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_answers_become_structs_field_for_field() {
        let value = serde_json::json!({"tid": "T1", "amount": {"total": 1000}, "sid": null, "list": [true]});
        let prost_types::value::Kind::StructValue(object) = json_to_struct_value(value) else {
            panic!("an object is a struct");
        };
        assert_eq!(
            object.fields["tid"].kind,
            Some(prost_types::value::Kind::StringValue("T1".into()))
        );
        assert_eq!(
            object.fields["sid"].kind,
            Some(prost_types::value::Kind::NullValue(0))
        );
        let Some(prost_types::value::Kind::StructValue(amount)) = &object.fields["amount"].kind
        else {
            panic!("nested object");
        };
        assert_eq!(
            amount.fields["total"].kind,
            Some(prost_types::value::Kind::NumberValue(1000.0))
        );
    }
}

//! The scheduler's gRPC surface: contract messages ⇄ domain types, nothing else.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pillivery_platform::auth::{Role, TokenVerifier, caller_from_request};
use pillivery_platform::error::{FieldViolation, Locale, Text};
use pillivery_platform::time::SharedClock;
use pillivery_proto::scheduler as pb;
use tonic::{Request, Response, Status};

use crate::billing::Biller;
use crate::domain::{Job, JobStatus, format_date, parse_date};
use crate::error::SchedulerError;
use crate::store::{JobRecord, SchedulerStore};

type Answer<T> = Result<Response<T>, Status>;

fn failure(locale: Locale) -> impl FnOnce(SchedulerError) -> Status {
    move |error| error.into_api_error().into_status(locale)
}

/// `pillivery.scheduler.v1.SchedulerAdminService`: billing runs, for admins only.
///
/// Every call checks the forwarded bearer token itself (the gateway checks it too, but the
/// service must not trust its network): no or a bad token is 401, a token without the ADMIN
/// role 403.
pub struct SchedulerAdminGrpc {
    biller: Arc<Biller>,
    verifier: TokenVerifier,
}

impl SchedulerAdminGrpc {
    pub fn new(biller: Arc<Biller>, verifier: TokenVerifier) -> Self {
        SchedulerAdminGrpc { biller, verifier }
    }
}

#[tonic::async_trait]
impl pb::scheduler_admin_service_server::SchedulerAdminService for SchedulerAdminGrpc {
    async fn run_billing(&self, request: Request<pb::RunBillingRequest>) -> Answer<pb::BillingRun> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller_from_request(&self.verifier, &request)?;
        if caller.role != Role::Admin {
            return Err(failure(locale)(SchedulerError::Forbidden));
        }
        let text = request.into_inner().as_of;
        let as_of = parse_date(&text).ok_or_else(|| {
            failure(locale)(SchedulerError::Invalid(vec![date_violation("asOf", &text)]))
        })?;
        tracing::info!(%as_of, admin = caller.user_id, "billing run requested");
        let counts = self
            .biller
            .run(as_of)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        Ok(Response::new(pb::BillingRun {
            as_of: format_date(as_of),
            charged: counts.charged as i64,
            declined: counts.declined as i64,
            retried: counts.retried as i64,
            suspended: counts.suspended as i64,
            faults: counts.faults as i64,
            deferred: counts.deferred as i64,
        }))
    }
}

/// `pillivery.scheduler.v1.SchedulerInternalService`: the fleet's direct access to jobs.
///
/// No token is checked: this service is only reachable on the fleet's internal network and has
/// no REST binding.
pub struct SchedulerInternalGrpc {
    store: SchedulerStore,
    clock: SharedClock,
}

impl SchedulerInternalGrpc {
    pub fn new(store: SchedulerStore, clock: SharedClock) -> Self {
        SchedulerInternalGrpc { store, clock }
    }

    async fn existing(&self, subscription_id: i64) -> Result<JobRecord, SchedulerError> {
        self.store
            .get(subscription_id)
            .await?
            .ok_or(SchedulerError::JobNotFound(subscription_id))
    }
}

#[tonic::async_trait]
impl pb::scheduler_internal_service_server::SchedulerInternalService for SchedulerInternalGrpc {
    async fn create_job(
        &self,
        request: Request<pb::CreateJobRequest>,
    ) -> Answer<pb::CreateJobResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let job = new_job(request.into_inner()).map_err(|v| failure(locale)(v.into()))?;
        let (stored, created) = self
            .store
            .create(&job, self.clock.now())
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        if created {
            tracing::info!(subscription_id = job.subscription_id, "billing job created");
        }
        Ok(Response::new(pb::CreateJobResponse {
            job: Some(job_message(&stored)),
            created,
        }))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Answer<pb::BillingJob> {
        let locale = Locale::from_metadata(request.metadata());
        let stored = self
            .existing(request.into_inner().subscription_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(job_message(&stored)))
    }

    async fn reschedule_job(
        &self,
        request: Request<pb::RescheduleJobRequest>,
    ) -> Answer<pb::BillingJob> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let mut violations = Vec::new();
        let next = parse_date(&request.next_billing_date);
        if next.is_none() {
            violations.push(date_violation(
                "nextBillingDate",
                &request.next_billing_date,
            ));
        }
        if let Some(period) = request.period_days
            && !(1..=365).contains(&period)
        {
            violations.push(range_violation("periodDays", period.into(), "1", "365"));
        }
        let (Some(next), true) = (next, violations.is_empty()) else {
            return Err(failure(locale)(SchedulerError::Invalid(violations)));
        };
        let mut job = self
            .existing(request.subscription_id)
            .await
            .map_err(failure(locale))?
            .job;
        if job.status.is_finished() {
            return Err(failure(locale)(SchedulerError::JobEnded(
                job.subscription_id,
            )));
        }
        // A date today or in the past is simply due: the next run bills it (SPEC section 5).
        job.next_billing_date = next;
        if let Some(period) = request.period_days {
            job.period_days = period;
        }
        self.store
            .update_schedule(&job, self.clock.now())
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        let stored = self
            .existing(job.subscription_id)
            .await
            .map_err(failure(locale))?;
        tracing::info!(subscription_id = job.subscription_id, next_billing_date = %next, "billing job rescheduled");
        Ok(Response::new(job_message(&stored)))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Answer<pb::BillingJob> {
        let locale = Locale::from_metadata(request.metadata());
        let mut job = self
            .existing(request.into_inner().subscription_id)
            .await
            .map_err(failure(locale))?
            .job;
        if !job.status.is_finished() {
            job.status = JobStatus::Canceled;
            self.store
                .update_schedule(&job, self.clock.now())
                .await
                .map_err(|error| failure(locale)(error.into()))?;
            tracing::info!(
                subscription_id = job.subscription_id,
                "billing job cancelled"
            );
        }
        let stored = self
            .existing(job.subscription_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(job_message(&stored)))
    }
}

fn date_violation(field: &str, text: &str) -> FieldViolation {
    FieldViolation::new(
        field,
        serde_json::Value::from(text),
        Text::new(
            "날짜는 YYYY-MM-DD 형식의 올바른 날짜여야 합니다.",
            "Must be a valid date as YYYY-MM-DD.",
        ),
    )
}

fn range_violation(field: &str, value: i64, min: &str, max: &str) -> FieldViolation {
    FieldViolation::new(
        field,
        serde_json::Value::from(value),
        Text::owned(
            format!("{min} 이상 {max} 이하여야 합니다."),
            format!("Must be between {min} and {max}."),
        ),
    )
}

/// A job from `CreateJob`, every field checked (all violations at once).
fn new_job(request: pb::CreateJobRequest) -> Result<Job, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let positive = |field: &str, value: i64, violations: &mut Vec<FieldViolation>| {
        if value <= 0 {
            violations.push(range_violation(field, value, "1", &i64::MAX.to_string()));
        }
    };
    positive("subscriptionId", request.subscription_id, &mut violations);
    positive("userId", request.user_id, &mut violations);
    positive("itemId", request.item_id, &mut violations);
    positive("originOrderId", request.origin_order_id, &mut violations);
    if !(1..=99).contains(&request.quantity) {
        violations.push(range_violation(
            "quantity",
            request.quantity.into(),
            "1",
            "99",
        ));
    }
    if request.unit_price < 0 {
        violations.push(range_violation(
            "unitPrice",
            request.unit_price,
            "0",
            &i64::MAX.to_string(),
        ));
    }
    if !(1..=365).contains(&request.period_days) {
        violations.push(range_violation(
            "periodDays",
            request.period_days.into(),
            "1",
            "365",
        ));
    }
    if request.cycle < 0 {
        violations.push(range_violation(
            "cycle",
            request.cycle.into(),
            "0",
            &i32::MAX.to_string(),
        ));
    }
    let next = parse_date(&request.next_billing_date);
    if next.is_none() {
        violations.push(date_violation(
            "nextBillingDate",
            &request.next_billing_date,
        ));
    }
    let last = match request.last_billed_date.as_str() {
        "" => Some(None),
        text => parse_date(text).map(Some),
    };
    if last.is_none() {
        violations.push(date_violation("lastBilledDate", &request.last_billed_date));
    }
    match (next, last, violations.is_empty()) {
        (Some(next_billing_date), Some(last_billed_date), true) => Ok(Job {
            subscription_id: request.subscription_id,
            user_id: request.user_id,
            item_id: request.item_id,
            item_name: request.item_name,
            quantity: request.quantity,
            unit_price: request.unit_price,
            period_days: request.period_days,
            origin_order_id: request.origin_order_id,
            status: JobStatus::Active,
            next_billing_date,
            last_billed_date,
            cycle: request.cycle,
            failed_attempts: 0,
            next_attempt_date: None,
            state_version: 0,
        }),
        _ => Err(violations),
    }
}

fn job_message(stored: &JobRecord) -> pb::BillingJob {
    let job = &stored.job;
    pb::BillingJob {
        subscription_id: job.subscription_id,
        user_id: job.user_id,
        item_id: job.item_id,
        item_name: job.item_name.clone(),
        quantity: job.quantity,
        unit_price: job.unit_price,
        period_days: job.period_days,
        origin_order_id: job.origin_order_id,
        status: match job.status {
            JobStatus::Active => pb::JobStatus::Active,
            JobStatus::PastDue => pb::JobStatus::PastDue,
            JobStatus::Suspended => pb::JobStatus::Suspended,
            JobStatus::Canceled => pb::JobStatus::Canceled,
        } as i32,
        next_billing_date: format_date(job.next_billing_date),
        last_billed_date: job.last_billed_date.map(format_date),
        cycle: job.cycle,
        failed_attempts: job.failed_attempts,
        next_attempt_date: job.next_attempt_date.map(format_date),
        state_version: job.state_version,
        updated_at: Some(timestamp(stored.updated_at)),
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

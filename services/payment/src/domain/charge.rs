//! Renewal charges, exactly once per (subscription, cycle) (SPEC section 6).
//!
//! A charge is a row keyed by its [`ChargeIdentity`], created on the first call and never
//! duplicated (a unique index). It is sent to the PG with a `partner_order_id` derived from the
//! identity alone, so every send of one charge — a retry after a fault, another replica, a
//! restart — carries the same id, and the PG answers a repeat with the first charge instead of
//! charging again. This relies on the PG treating `partner_order_id` as idempotent for
//! subscription charges, which the sandbox guarantees and `docs/payments.md` records as the
//! contract we need from a real PG.
//!
//! Before a send the row is marked `maybe_sent`; a send that certainly did not leave
//! (breaker open, connection refused) clears it again. A row that is `maybe_sent` and not
//! finished has an unknown outcome: it is resolved by sending the same charge again before
//! anything else, even if the subscription has been cancelled since (that send was decided
//! while it was active, and the PG's answer is the only way to learn whether money moved).
//! A lease on the row makes sure two calls for one charge never send at the same time.
//!
//! A decline is recorded and replayed to repeats of the same attempt. The scheduler retries a
//! declined renewal a day later with a higher `attempt` number; only then is it sent again.

/// What identifies a renewal charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChargeIdentity {
    pub subscription_id: i64,
    pub cycle: i32,
}

impl ChargeIdentity {
    /// `sub-{subscriptionId}-c{cycle}`: the PG's idempotency key for this charge.
    pub fn partner_order_id(self) -> String {
        format!("sub-{}-c{}", self.subscription_id, self.cycle)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeState {
    /// Not finished: never sent, or sent with an unknown outcome.
    Pending,
    Charged,
    Declined,
}

impl ChargeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeState::Pending => "PENDING",
            ChargeState::Charged => "CHARGED",
            ChargeState::Declined => "DECLINED",
        }
    }

    pub fn parse(text: &str) -> Option<ChargeState> {
        [
            ChargeState::Pending,
            ChargeState::Charged,
            ChargeState::Declined,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A charge as recorded, as much as deciding the next step needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedCharge {
    pub state: ChargeState,
    /// The highest scheduler attempt this charge has been asked for.
    pub attempt: i32,
    /// A send may have reached the PG (outcome unknown until a send answers).
    pub maybe_sent: bool,
    /// Another call holds the lease right now.
    pub leased: bool,
}

/// What a `ChargeSubscription` call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeStep {
    /// Answer the recorded outcome.
    Replay,
    /// Another call is sending this charge: answer UNAVAILABLE, the caller retries.
    Busy,
    /// Send it; `resolving` when an earlier send's outcome is unknown.
    Send { resolving: bool },
    /// The subscription (or its PG key) is inactive and nothing was ever sent: refuse.
    Refuse,
}

/// `requested_attempt` is the caller's attempt number (1 when not given); `usable` whether the
/// subscription link and its PG key are active.
pub fn next_charge_step(
    recorded: RecordedCharge,
    requested_attempt: i32,
    usable: bool,
) -> ChargeStep {
    match recorded.state {
        ChargeState::Charged => return ChargeStep::Replay,
        ChargeState::Declined if requested_attempt <= recorded.attempt => {
            return ChargeStep::Replay;
        }
        _ => {}
    }
    if recorded.leased {
        return ChargeStep::Busy;
    }
    // A declined charge moved no money, so its earlier sends are settled, not unknown.
    let unknown = recorded.maybe_sent && recorded.state == ChargeState::Pending;
    if unknown {
        return ChargeStep::Send { resolving: true };
    }
    if !usable {
        return ChargeStep::Refuse;
    }
    ChargeStep::Send { resolving: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChargeState::*;

    fn recorded(
        state: ChargeState,
        attempt: i32,
        maybe_sent: bool,
        leased: bool,
    ) -> RecordedCharge {
        RecordedCharge {
            state,
            attempt,
            maybe_sent,
            leased,
        }
    }

    #[test]
    fn partner_order_ids_depend_on_the_identity_only() {
        let identity = ChargeIdentity {
            subscription_id: 12,
            cycle: 3,
        };
        assert_eq!(identity.partner_order_id(), "sub-12-c3");
        assert_eq!(identity.partner_order_id(), identity.partner_order_id());
        assert_ne!(
            ChargeIdentity {
                subscription_id: 1,
                cycle: 23
            }
            .partner_order_id(),
            ChargeIdentity {
                subscription_id: 12,
                cycle: 3
            }
            .partner_order_id()
        );
        for state in [Pending, Charged, Declined] {
            assert_eq!(ChargeState::parse(state.as_str()), Some(state));
        }
        assert_eq!(ChargeState::parse("charged"), None);
    }

    #[test]
    fn every_recorded_state_leads_to_one_step() {
        let cases = [
            // (name, recorded, requested attempt, usable, expected)
            (
                "new charge",
                recorded(Pending, 1, false, false),
                1,
                true,
                ChargeStep::Send { resolving: false },
            ),
            (
                "new charge, subscription cancelled",
                recorded(Pending, 1, false, false),
                1,
                false,
                ChargeStep::Refuse,
            ),
            (
                "charged: replay",
                recorded(Charged, 1, true, false),
                1,
                true,
                ChargeStep::Replay,
            ),
            (
                "charged: replay even to a later attempt",
                recorded(Charged, 1, true, false),
                3,
                true,
                ChargeStep::Replay,
            ),
            (
                "charged: replay after cancellation",
                recorded(Charged, 1, true, false),
                1,
                false,
                ChargeStep::Replay,
            ),
            (
                "declined: same attempt replays",
                recorded(Declined, 2, true, false),
                2,
                true,
                ChargeStep::Replay,
            ),
            (
                "declined: earlier attempt replays",
                recorded(Declined, 2, true, false),
                1,
                true,
                ChargeStep::Replay,
            ),
            (
                "declined: the next attempt sends again",
                recorded(Declined, 2, true, false),
                3,
                true,
                ChargeStep::Send { resolving: false },
            ),
            (
                "declined, next attempt, cancelled",
                recorded(Declined, 2, true, false),
                3,
                false,
                ChargeStep::Refuse,
            ),
            (
                "unknown outcome is resolved first",
                recorded(Pending, 1, true, false),
                1,
                true,
                ChargeStep::Send { resolving: true },
            ),
            (
                "unknown outcome is resolved even after cancellation",
                recorded(Pending, 1, true, false),
                1,
                false,
                ChargeStep::Send { resolving: true },
            ),
            (
                "in flight elsewhere",
                recorded(Pending, 1, true, true),
                1,
                true,
                ChargeStep::Busy,
            ),
            (
                "in flight elsewhere, never sent",
                recorded(Pending, 1, false, true),
                1,
                true,
                ChargeStep::Busy,
            ),
            (
                "declined retry in flight",
                recorded(Declined, 1, true, true),
                2,
                true,
                ChargeStep::Busy,
            ),
        ];
        for (name, recorded, attempt, usable, expected) in cases {
            assert_eq!(
                next_charge_step(recorded, attempt, usable),
                expected,
                "{name}"
            );
        }
    }
}

//! The event-sourcing abstraction, after cqrs-es: an aggregate decides in
//! `handle` (all business rules, changes nothing) and changes in `apply`
//! (no rules, never fails). Its state is the fold of its events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event of an aggregate: past tense, with a stable type name and a
/// schema version so that stored events can be upcast later.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + std::fmt::Debug {
    /// The stored type name, e.g. `OrderPlaced`.
    fn event_type(&self) -> &'static str;
    /// Version of this event's payload schema.
    fn schema_version(&self) -> u32 {
        1
    }
}

/// A consistency boundary whose state is rebuilt from its events.
pub trait Aggregate: Default {
    /// Stored aggregate type name, e.g. `order`.
    const TYPE: &'static str;
    type Command;
    type Event: DomainEvent;
    type Error: std::error::Error;

    /// How many events have been applied: the version the next append
    /// expects to find in the store.
    fn version(&self) -> u64;

    /// Decides which events a command produces, without changing `self`.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one event that happened at `at`. Never fails: an event is a fact.
    fn apply(&mut self, event: &Self::Event, at: DateTime<Utc>);

    /// Rebuilds the state from a stream of events in version order.
    fn rehydrate<'a, I>(events: I) -> Self
    where
        I: IntoIterator<Item = (&'a Self::Event, DateTime<Utc>)>,
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for (event, at) in events {
            state.apply(event, at);
        }
        state
    }
}

//! ward-annunciate: how the alarm system reaches people besides the screen: the alarm tones
//! on the audio output ([`Annunciator`]) and OS notifications ([`Notifier`]).
//!
//! What it is: two small threads with their own queues, each reporting its health as
//! counters and a status the alarm driver turns into technical alarms. What it is not: it
//! decides nothing. Which tone sounds, and which alarm is notified, is the alarm engine's
//! decision (`ward_alarm`), carried here by the station's alarm driver (`ward_core`). It has
//! no error type: a device or daemon that fails is reported through status and counters,
//! never returned, so that a missing sound card cannot stop the station.
//!
//! Layout: `audio` (the annunciator: cpal output, tone buffers from `ward_alarm::tone`),
//! `notify` (the OS notification thread, notify-rust).

mod audio;
mod notify;

pub use audio::{Annunciator, AudioStatus};
pub use notify::{Notice, Notifier, NotifyCounters};

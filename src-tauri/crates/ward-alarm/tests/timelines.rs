//! Alarm scenario timelines on explicit time, kept as readable text snapshots.
//!
//! Each test drives the engine second by second (polling every 100 ms, as the station's
//! driver does) and prints every log entry and every change of what sounds. Update the
//! snapshots with `UPDATE_EXPECT=1 cargo test -p ward-alarm` after a deliberate change, and
//! read the diff: it is the behaviour change.

#![allow(clippy::unwrap_used)] // test helpers: a failed step should fail the test loudly

use expect_test::{expect, Expect};
use ward_alarm::rules::defaults;
use ward_alarm::*;
use ward_model::codes::*;

const BED: &str = "bed-03";

struct Timeline {
    e: Engine,
    t: Ms,
    out: String,
    sound: Option<Priority>,
    /// While true the monitor sends a heartbeat every second, so only the tests about
    /// silence see "No data".
    alive: bool,
    /// Wall clock minus the engine's monotonic time; 0 unless a test steps the wall clock.
    wall: Ms,
    /// (monotonic time, step): the wall clock jumps by `step` when time reaches it.
    step: Option<(Ms, Ms)>,
}

impl Timeline {
    fn new(policy: Policy) -> Self {
        let mut e = Engine::new(policy);
        e.add_bed(0, BED, defaults(Category::Adult), true).unwrap();
        Self {
            e,
            t: 0,
            out: String::new(),
            sound: None,
            alive: true,
            wall: 0,
            step: None,
        }
    }
    /// Advances time to `t` (ms), polling every 100 ms.
    fn at(&mut self, t: Ms) -> &mut Self {
        while self.t < t {
            self.t = (self.t + 100).min(t);
            if let Some((at, step)) = self.step {
                if self.t >= at {
                    self.wall += step;
                    self.step = None;
                }
            }
            self.e.set_clock(self.t, self.t + self.wall);
            if self.alive && self.t % 1000 == 0 {
                self.e.handle_seen(self.t, BED);
            }
            self.e.poll(self.t);
            self.flush();
        }
        self
    }
    fn flush(&mut self) {
        for l in self.e.drain_log() {
            // Stamps are wall-clock time; the timeline prints them back on the engine's own
            // (monotonic) time, so a wall-clock step shows only as its own log line, and a
            // stamp that missed the step would print an hour off.
            let mut line = format!(
                "{:06.1}s {:<7} {:<15} {:<8} {}",
                (l.t_ms - self.wall) as f64 / 1000.0,
                l.bed.as_deref().unwrap_or("station"),
                format!("{:?}", l.kind),
                l.priority.map(|p| p.as_str()).unwrap_or("-"),
                l.label
            );
            if let Some(v) = l.value {
                line += &format!(" value={v}");
            }
            if let Some(v) = l.limit {
                line += &format!(" limit={v}");
            }
            if let Some(u) = &l.user {
                line += &format!(" by={u}");
            }
            if let Some(d) = &l.detail {
                line += &format!(" ({d})");
            }
            self.out += line.trim_end();
            self.out += "\n";
        }
        let a = self.e.annunciation();
        if a.sound != self.sound {
            self.sound = a.sound;
            self.out += &format!(
                "{:06.1}s sound: {}\n",
                self.t as f64 / 1000.0,
                a.sound.map(|p| p.as_str()).unwrap_or("silent")
            );
        }
        if let Some(r) = a.reminder {
            self.out += &format!(
                "{:06.1}s reminder burst: {}\n",
                self.t as f64 / 1000.0,
                r.as_str()
            );
        }
    }
    /// The device is alive (heartbeat) at the current time.
    fn hb(&mut self) -> &mut Self {
        self.e.handle_seen(self.t, BED);
        self.flush();
        self
    }
    fn vital(&mut self, code: u32, v: f64) -> &mut Self {
        self.e.handle_vitals(self.t, BED, &[(code, Some(v))]);
        self.flush();
        self
    }
    /// One value per second from `from` to `to` (exclusive), as a monitor sends them.
    fn series(&mut self, code: u32, from: Ms, to: Ms, v: impl Fn(Ms) -> f64) -> &mut Self {
        let mut s = from;
        while s < to {
            self.at(s * 1000);
            self.vital(code, v(s));
            s += 1;
        }
        self
    }
    fn ack_first(&mut self, user: &str) -> &mut Self {
        let id = self.e.alarms()[0].id;
        self.e.acknowledge(self.t, id, user).unwrap();
        self.flush();
        self
    }
    fn check(&mut self, expect: Expect) {
        self.flush();
        expect.assert_eq(&self.out);
    }
}

#[test]
fn desaturation_with_condition_delay() {
    // SpO2 falls from 97 to 78 over 20 s; "SpO2 low" (< 90, MEDIUM) waits 10 s, the
    // desaturation rule (< 80, HIGH) 5 s. A brief dip to 89 at 2 s is shorter than the delay
    // and raises nothing.
    let mut t = Timeline::new(Policy::default());
    t.series(MDC_PULS_OXIM_SAT_O2, 0, 40, |s| match s {
        2 => 89.0,
        0..=5 => 97.0,
        6..=25 => 97.0 - (s - 5) as f64,
        _ => 77.0,
    });
    t.check(expect![[r#"
        0023.0s bed-03  Raised          medium   SpO2 low value=80 limit=90
        0023.0s sound: medium
        0028.0s bed-03  Raised          high     Desaturation value=77 limit=80
        0028.0s sound: high
    "#]]);
}

#[test]
fn heart_rate_crossing_in_and_out_with_hysteresis() {
    // HR limit low 50, hysteresis 2, delay 5 s. 49 for 6 s raises; 50 and 51 (inside the
    // limit but not by the hysteresis) keep it; 52 ends it (MEDIUM does not latch).
    let mut t = Timeline::new(Policy::default());
    t.series(MDC_ECG_HEART_RATE, 0, 20, |s| match s {
        0..=2 => 60.0,
        3..=9 => 49.0,
        10..=11 => 50.0,
        12..=13 => 51.0,
        _ => 52.0,
    });
    t.check(expect![[r#"
        0008.0s bed-03  Raised          medium   HR low value=49 limit=50
        0008.0s sound: medium
        0014.0s bed-03  Ended           medium   HR low value=52 limit=50
        0014.0s sound: silent
    "#]]);
}

#[test]
fn latched_high_clears_only_when_acknowledged() {
    let mut t = Timeline::new(Policy::default());
    t.series(MDC_ECG_HEART_RATE, 0, 30, |s| {
        if (5..=14).contains(&s) {
            35.0
        } else {
            70.0
        }
    });
    t.at(40_000);
    t.ack_first("nurse.ana");
    t.at(45_000);
    t.check(expect![[r#"
        0010.0s bed-03  Raised          medium   HR low value=35 limit=50
        0010.0s bed-03  Raised          high     Extreme bradycardia value=35 limit=40
        0010.0s sound: high
        0015.0s bed-03  Ended           medium   HR low value=70 limit=50
        0015.0s bed-03  Latched         high     Extreme bradycardia value=70 limit=40
        0040.0s bed-03  Acknowledged    high     Extreme bradycardia value=70 limit=40 by=nurse.ana
        0040.0s bed-03  Reset           high     Extreme bradycardia value=70 limit=40 by=nurse.ana
        0040.0s sound: silent
    "#]]);
}

#[test]
fn acknowledgement_from_another_station_applies_to_the_same_episode_only() {
    let mut t = Timeline::new(Policy::default());
    t.series(
        MDC_ECG_HEART_RATE,
        0,
        12,
        |s| if s >= 2 { 130.0 } else { 80.0 },
    );
    let user = "nurse.ana at station st-b";
    // Another bed's or another condition's acknowledgement changes nothing here.
    assert_eq!(
        t.e.acknowledge_remote(t.t, "bed-09", "limit:hr_high", t.t, 5_000, user)
            .unwrap(),
        None
    );
    assert_eq!(
        t.e.acknowledge_remote(t.t, BED, "limit:hr_low", t.t, 5_000, user)
            .unwrap(),
        None
    );
    // Acknowledged at the other station at 10 s: applies to this HR high (since 7 s).
    let id =
        t.e.acknowledge_remote(t.t, BED, "limit:hr_high", 10_000, 5_000, user)
            .unwrap();
    assert_eq!(id, Some(t.e.alarms()[0].id));
    t.flush();
    // The same acknowledgement again (the core delivers at least once): nothing new.
    assert_eq!(
        t.e.acknowledge_remote(t.t, BED, "limit:hr_high", 10_000, 5_000, user)
            .unwrap(),
        None
    );
    // The episode ends and a new one starts at 25 s: an old acknowledgement does not silence it.
    t.series(MDC_ECG_HEART_RATE, 12, 30, |s| {
        if (15..20).contains(&s) {
            80.0
        } else {
            130.0
        }
    });
    assert_eq!(
        t.e.acknowledge_remote(t.t, BED, "limit:hr_high", 10_000, 5_000, user)
            .unwrap(),
        None
    );
    t.check(expect![[r#"
        0007.0s bed-03  Raised          medium   HR high value=130 limit=120
        0007.0s sound: medium
        0011.0s bed-03  Acknowledged    medium   HR high value=130 limit=120 by=nurse.ana at station st-b
        0011.0s sound: silent
        0015.0s bed-03  Ended           medium   HR high value=80 limit=120
        0025.0s bed-03  Raised          medium   HR high value=130 limit=120
        0025.0s sound: medium
    "#]]);
}

#[test]
fn discharge_ends_the_beds_alarms_and_admission_restarts_its_liveness() {
    let mut t = Timeline::new(Policy::default());
    t.series(
        MDC_ECG_HEART_RATE,
        0,
        12,
        |s| if s >= 2 { 35.0 } else { 80.0 },
    );
    t.alive = false;
    let ended =
        t.e.set_monitored(t.t, BED, false, "charge.cho", Some("mon-03".into()))
            .unwrap();
    assert_eq!(ended, 2);
    // Discharged: no "No data" for the empty bed, however long it stays empty.
    t.at(60_000);
    t.e.set_monitored(t.t, BED, true, "charge.cho", Some("mon-07".into()))
        .unwrap();
    // Admitted, and the new monitor never speaks: "No data" after its 5 s budget.
    t.at(66_000);
    assert_eq!(
        t.e.set_monitored(t.t, "bed-99", false, "charge.cho", None)
            .unwrap_err()
            .code(),
        "unknown_bed"
    );
    t.check(expect![[r#"
        0007.0s bed-03  Raised          medium   HR low value=35 limit=50
        0007.0s bed-03  Raised          high     Extreme bradycardia value=35 limit=40
        0007.0s sound: high
        0011.0s bed-03  Ended           medium   HR low value=35 limit=50 by=charge.cho
        0011.0s bed-03  Ended           high     Extreme bradycardia value=35 limit=40 by=charge.cho
        0011.0s bed-03  Discharged      -        Device discharged by=charge.cho (mon-03)
        0011.1s sound: silent
        0060.0s bed-03  Admitted        -        Device admitted by=charge.cho (mon-07)
        0065.0s bed-03  Raised          medium   No data from monitor
        0065.0s sound: medium
    "#]]);
}

#[test]
fn acknowledged_alarm_stays_quiet_but_a_new_condition_sounds() {
    let mut t = Timeline::new(Policy::default());
    t.series(
        MDC_ECG_HEART_RATE,
        0,
        12,
        |s| if s >= 2 { 130.0 } else { 80.0 },
    );
    t.ack_first("nurse.ana");
    t.series(MDC_PULS_OXIM_SAT_O2, 12, 30, |_| 87.0);
    t.check(expect![[r#"
        0007.0s bed-03  Raised          medium   HR high value=130 limit=120
        0007.0s sound: medium
        0011.0s bed-03  Acknowledged    medium   HR high value=130 limit=120 by=nurse.ana
        0011.0s sound: silent
        0022.0s bed-03  Raised          medium   SpO2 low value=87 limit=90
        0022.0s sound: medium
    "#]]);
}

#[test]
fn audio_pause_expires_and_sound_returns() {
    let policy = Policy {
        escalation: vec![],
        ..Policy::default()
    };
    let mut t = Timeline::new(policy);
    t.series(MDC_RESP_RATE, 0, 15, |_| 35.0);
    let n = t.e.audio_pause(t.t, &Scope::All, "nurse.ben").unwrap();
    assert_eq!(n, 1);
    t.flush();
    // The condition persists: values keep coming every second until after the pause.
    t.series(MDC_RESP_RATE, 15, 140, |_| 35.0);
    t.check(expect![[r#"
        0010.0s bed-03  Raised          medium   RR high value=35 limit=30
        0010.0s sound: medium
        0014.0s bed-03  AudioPaused     medium   RR high value=35 limit=30 by=nurse.ben (until 134000)
        0014.0s sound: silent
        0134.0s bed-03  AudioPauseEnded medium   RR high value=35 limit=30
        0134.0s sound: medium
    "#]]);
}

#[test]
fn unanswered_medium_escalates_to_high() {
    let mut t = Timeline::new(Policy::default());
    t.series(MDC_PRESS_BLD_NONINV_SYS, 0, 1, |_| 170.0);
    t.at(60_000).hb();
    t.at(120_000).hb();
    t.at(125_000).hb();
    t.check(expect![[r#"
        0000.0s bed-03  Raised          medium   NIBP sys high value=170 limit=160
        0000.0s sound: medium
        0120.0s bed-03  Escalated       high     NIBP sys high value=170 limit=160
        0120.0s sound: high
    "#]]);
}

#[test]
fn silent_device_raises_a_technical_alarm_within_its_budget_and_clears_on_return() {
    let mut t = Timeline::new(Policy::default());
    t.alive = false;
    for s in 0..4 {
        t.at(s * 1000).hb();
    }
    // Last sign of life at 3.0 s; the budget is 5 s.
    t.at(12_000).hb();
    t.at(14_000);
    // A will (or "offline" status) raises it at once, without waiting for the budget.
    t.e.handle_offline(t.t, BED);
    t.flush();
    t.at(15_000).hb();
    t.check(expect![[r#"
        0008.0s bed-03  Raised          medium   No data from monitor
        0008.0s sound: medium
        0012.0s bed-03  Ended           medium   No data from monitor
        0012.0s sound: silent
        0014.0s bed-03  Raised          medium   No data from monitor
        0014.0s sound: medium
        0015.0s bed-03  Ended           medium   No data from monitor
        0015.0s sound: silent
    "#]]);
}

#[test]
fn device_alarm_is_mirrored_with_its_priority() {
    let mut t = Timeline::new(Policy::default());
    t.at(1_000);
    t.e.handle_device_alarm(t.t, BED, "a-17", "Asystole", Priority::Medium, true, None);
    t.flush();
    t.at(2_000);
    t.e.handle_device_alarm(t.t, BED, "a-17", "Asystole", Priority::High, true, None);
    t.flush();
    t.at(3_000);
    t.e.handle_device_alarm(t.t, BED, "a-17", "Asystole", Priority::High, false, None);
    t.flush();
    t.at(4_000).hb();
    t.ack_first("nurse.ana");
    t.check(expect![[r#"
        0001.0s bed-03  Raised          medium   Asystole (monitor)
        0001.0s sound: medium
        0002.0s bed-03  Escalated       high     Asystole (monitor)
        0002.0s sound: high
        0003.0s bed-03  Latched         high     Asystole (monitor)
        0004.0s bed-03  Acknowledged    high     Asystole (monitor) by=nurse.ana
        0004.0s bed-03  Reset           high     Asystole (monitor) by=nurse.ana
        0004.0s sound: silent
    "#]]);
}

#[test]
fn alarm_pause_hides_physiological_alarms_of_one_bed_but_not_technical_ones() {
    let mut t = Timeline::new(Policy::default());
    t.at(1_000).hb();
    t.e.alarm_pause(t.t, BED, "nurse.ana").unwrap();
    t.flush();
    t.series(MDC_ECG_HEART_RATE, 1, 20, |_| 125.0);
    assert!(!t.e.alarms()[0].visible());
    t.at(28_000);
    t.series(MDC_ECG_HEART_RATE, 121, 125, |_| 125.0);
    t.check(expect![[r#"
        0001.0s bed-03  AlarmPaused     -        Alarms paused by=nurse.ana (until 121000)
        0006.0s bed-03  Raised          medium   HR high value=125 limit=120
        0121.0s bed-03  AlarmPauseEnded -        Alarm pause ended
        0121.0s sound: medium
    "#]]);
}

#[test]
fn audio_off_only_where_policy_allows_with_reminders() {
    let mut t = Timeline::new(Policy::default());
    t.series(MDC_TEMP_BODY, 0, 1, |_| 39.5);
    assert_eq!(
        t.e.audio_off(t.t, &Scope::All, "nurse.ana"),
        Err(AlarmError::NotAllowed("audio off is disabled by policy"))
    );
    let policy = Policy {
        allow_audio_off: true,
        audio_off_reminder_ms: 30_000,
        ..Policy::default()
    };
    let mut t = Timeline::new(policy);
    t.series(MDC_TEMP_BODY, 0, 1, |_| 39.5);
    t.e.audio_off(t.t, &Scope::Bed(BED.into()), "charge.cho")
        .unwrap();
    t.flush();
    for s in 1..=65 {
        t.at(s * 1000).hb();
    }
    t.check(expect![[r#"
        0000.0s bed-03  Raised          low      Temp high value=39.5 limit=39
        0000.0s sound: low
        0000.0s bed-03  AudioOff        low      Temp high value=39.5 limit=39 by=charge.cho
        0000.0s sound: silent
        0030.0s bed-03  Reminder        low      Temp high value=39.5 limit=39
        0030.0s reminder burst: low
        0060.0s bed-03  Reminder        low      Temp high value=39.5 limit=39
        0060.0s reminder burst: low
    "#]]);
}

#[test]
fn station_technical_alarms_and_ui_heartbeat() {
    let mut t = Timeline::new(Policy::default());
    t.e.add_bed(0, BED, defaults(Category::Adult), false)
        .unwrap();
    t.at(1_000);
    t.e.handle_station(t.t, Technical::AudioUnavailable, true, "no ALSA device");
    t.flush();
    t.at(2_000);
    t.e.handle_ui_heartbeat(t.t);
    t.at(9_000);
    t.e.handle_ui_heartbeat(t.t);
    t.flush();
    t.e.handle_station(t.t, Technical::AudioUnavailable, false, "");
    t.flush();
    t.check(expect![[r#"
        0001.0s station Raised          high     Alarm audio unavailable (no ALSA device)
        0001.0s sound: high
        0007.0s station Raised          high     Display not responding
        0009.0s station Latched         high     Display not responding
        0009.0s station Latched         high     Alarm audio unavailable
    "#]]);
}

#[test]
fn sensor_off_is_a_technical_alarm_after_its_delay() {
    let mut t = Timeline::new(Policy::default());
    for s in 0..15 {
        t.at(s * 1000);
        t.e.handle_vitals(t.t, BED, &[(MDC_PULS_OXIM_SAT_O2, None)]);
        t.flush();
    }
    t.vital(MDC_PULS_OXIM_SAT_O2, 97.0);
    t.check(expect![[r#"
        0010.0s bed-03  Raised          low      SpO2 sensor off / no value
        0010.0s sound: low
        0014.0s bed-03  Ended           low      SpO2 sensor off / no value
        0014.0s sound: silent
    "#]]);
}

#[test]
fn limits_change_is_validated_logged_and_applies_to_next_values() {
    let mut t = Timeline::new(Policy::default());
    t.series(MDC_ECG_HEART_RATE, 0, 8, |_| 115.0);
    let mut rules = defaults(Category::Adult);
    let hr_high = rules.iter_mut().find(|r| r.id == "hr_high").unwrap();
    hr_high.threshold = 110.0;
    assert_eq!(
        t.e.set_rules(t.t, BED, rules.clone(), " "),
        Err(AlarmError::NoUser)
    );
    let mut broken = rules.clone();
    broken[0].hysteresis = -1.0;
    assert!(matches!(
        t.e.set_rules(t.t, BED, broken, "charge.cho"),
        Err(AlarmError::InvalidRule { index: 0, .. })
    ));
    rules.retain(|r| r.code == MDC_ECG_HEART_RATE);
    t.e.set_rules(t.t, BED, rules, "charge.cho").unwrap();
    t.flush();
    t.series(MDC_ECG_HEART_RATE, 8, 16, |_| 115.0);
    t.check(expect![[r#"
        0007.0s bed-03  LimitsChanged   -        Limits changed by=charge.cho (hr_low<50 hr_high>110 hr_extreme_low<40 hr_extreme_high>150)
        0013.0s bed-03  Raised          medium   HR high value=115 limit=110
        0013.0s sound: medium
    "#]]);
}

#[test]
fn commands_name_what_is_wrong() {
    let mut e = Engine::new(Policy::default());
    e.add_bed(0, BED, defaults(Category::Adult), true).unwrap();
    assert_eq!(
        e.acknowledge(0, 99, "nurse.ana"),
        Err(AlarmError::UnknownAlarm(99))
    );
    assert_eq!(
        e.alarm_pause(0, "bed-99", "nurse.ana"),
        Err(AlarmError::UnknownBed("bed-99".into()))
    );
    e.handle_vitals(0, BED, &[(MDC_PRESS_BLD_NONINV_SYS, Some(200.0))]);
    let id = e.alarms()[0].id;
    assert_eq!(e.acknowledge(0, id, ""), Err(AlarmError::NoUser));
    e.acknowledge(1, id, "nurse.ana").unwrap();
    assert_eq!(
        e.acknowledge(2, id, "nurse.ana"),
        Err(AlarmError::AlreadyAcknowledged(id))
    );
    assert_eq!(AlarmError::NoUser.code(), "no_user");
    e.self_check().unwrap();
}

/// Polling only when `poll_timeout` says so gives the same log as polling every 100 ms: the
/// driver can sleep until the next deadline without missing a transition.
#[test]
fn poll_timeout_names_every_deadline() {
    fn run(every_100ms: bool) -> Vec<(Ms, LogKind, String)> {
        let mut e = Engine::new(Policy::default());
        e.add_bed(0, BED, defaults(Category::Adult), true).unwrap();
        let mut log = Vec::new();
        let mut t = 0;
        let mut next_vital = 0;
        while t <= 200_000 {
            if t == next_vital && t < 30_000 {
                e.handle_vitals(t, BED, &[(MDC_PULS_OXIM_SAT_O2, Some(86.0))]);
                next_vital += 1000;
            }
            if t == 20_000 {
                let _ = e.audio_pause(t, &Scope::All, "nurse.ana");
            }
            e.poll(t);
            log.extend(
                e.drain_log()
                    .into_iter()
                    .map(|l| (l.t_ms, l.kind, l.condition)),
            );
            let step = if every_100ms {
                100
            } else {
                let mut n = e.poll_timeout().unwrap_or(Ms::MAX).max(t + 1);
                if t < 30_000 {
                    n = n.min(next_vital);
                }
                n - t
            };
            t += step;
        }
        log
    }
    let fine = run(true);
    let sparse = run(false);
    assert!(fine.len() >= 5, "{fine:?}");
    // Sparse polling lands exactly on deadlines; fine polling on the next 100 ms tick.
    assert_eq!(fine.len(), sparse.len(), "{fine:?}\n{sparse:?}");
    for (f, s) in fine.iter().zip(&sparse) {
        assert_eq!((f.1, &f.2), (s.1, &s.2));
        assert!(f.0 >= s.0 && f.0 - s.0 < 100, "{f:?} vs {s:?}");
    }
}

/// Runs `scenario` with the wall clock stepping by `step` ms at `at` ms of monotonic time.
fn with_step(policy: Policy, at: Ms, step: Ms, scenario: impl Fn(&mut Timeline)) -> Timeline {
    let mut t = Timeline::new(policy);
    t.step = Some((at, step));
    scenario(&mut t);
    t.flush();
    t
}

/// The timeline without the line that reports the step itself.
fn without_step_line(out: &str) -> String {
    out.lines()
        .filter(|l| !l.contains("ClockStepped"))
        .map(|l| format!("{l}\n"))
        .collect()
}

const HOUR: Ms = 3_600_000;

/// A wall-clock step of an hour, forwards or back, in the middle of a condition delay, an
/// audio pause or a wait for escalation moves none of them: each timeline is the same as
/// with no step at all, apart from the logged step.
#[test]
fn wall_clock_step_moves_no_delay_pause_or_escalation() {
    let no_escalation = Policy {
        escalation: vec![],
        ..Policy::default()
    };
    // HR 130 from 2 s: "HR high" waits out its 5 s delay; the step comes at 4.5 s.
    let delay = |t: &mut Timeline| {
        t.series(
            MDC_ECG_HEART_RATE,
            0,
            12,
            |s| if s >= 2 { 130.0 } else { 80.0 },
        );
    };
    // Raised at 5 s, audio paused at 6 s for 120 s; the step comes at 60 s.
    let pause = |t: &mut Timeline| {
        t.series(MDC_ECG_HEART_RATE, 0, 7, |_| 130.0);
        t.e.audio_pause(t.t, &Scope::All, "nurse.ana").unwrap();
        t.flush();
        t.series(MDC_ECG_HEART_RATE, 7, 130, |_| 130.0);
    };
    // MEDIUM raised at 5 s, unanswered: HIGH at 125 s; the step comes at 60 s.
    let escalation = |t: &mut Timeline| {
        t.series(MDC_ECG_HEART_RATE, 0, 130, |_| 130.0);
    };
    type Scenario<'a> = &'a dyn Fn(&mut Timeline);
    let cases: [(&str, Policy, Ms, Scenario); 3] = [
        ("condition delay", Policy::default(), 4_500, &delay),
        ("audio pause", no_escalation, 60_000, &pause),
        ("escalation", Policy::default(), 60_000, &escalation),
    ];
    for (name, policy, at, scenario) in cases {
        let plain = with_step(policy.clone(), at, 0, scenario).out;
        for step in [HOUR, -HOUR] {
            let stepped = with_step(policy.clone(), at, step, scenario);
            assert_eq!(
                stepped.out.matches("ClockStepped").count(),
                1,
                "{name}, step {step}: the step is logged once\n{}",
                stepped.out
            );
            assert_eq!(
                without_step_line(&stepped.out),
                plain,
                "{name}: a wall-clock step of {step} ms changed the timeline"
            );
        }
    }
    // The escalation case in full, stepping forward: the step is a line of its own, at the
    // moment it happened, with its size.
    with_step(Policy::default(), 60_000, HOUR, escalation).check(expect![[r#"
        0005.0s bed-03  Raised          medium   HR high value=130 limit=120
        0005.0s sound: medium
        0060.0s station ClockStepped    -        Wall clock changed (wall clock stepped by +3600.000 s; alarm delays, pauses and escalation run on the monotonic clock and did not move)
        0125.0s bed-03  Escalated       high     HR high value=130 limit=120
        0125.0s sound: high
    "#]]);
}

/// The times handed out for display are wall-clock: after a step, a pause's end moves with
/// the wall clock, so the remaining time a window counts down is unchanged.
#[test]
fn displayed_pause_end_follows_the_wall_clock() {
    let policy = Policy {
        escalation: vec![],
        ..Policy::default()
    };
    let mut t = with_step(policy, 30_000, -HOUR, |t| {
        t.series(MDC_ECG_HEART_RATE, 0, 7, |_| 130.0);
        t.e.audio_pause(t.t, &Scope::All, "nurse.ana").unwrap();
        t.flush();
        t.at(40_000);
    });
    let a = &t.e.alarms()[0];
    let Inactivation::AudioPaused { until_ms, .. } = a.inactivation else {
        panic!("not paused: {a:?}");
    };
    // Paused at 6 s for 120 s: ends at 126 s of monotonic time, shown on the stepped clock.
    assert_eq!(until_ms, 126_000 - HOUR);
    assert_eq!(
        until_ms - (t.t + t.wall),
        86_000,
        "86 s of the pause are left"
    );
    // Onset is a stamp: it stays where the wall clock was when the alarm began.
    assert_eq!(a.onset_ms, 5_000);
    t.check(expect![[r#"
        0005.0s bed-03  Raised          medium   HR high value=130 limit=120
        0005.0s sound: medium
        0006.0s bed-03  AudioPaused     medium   HR high value=130 limit=120 by=nurse.ana (until 126000)
        0006.0s sound: silent
        0030.0s station ClockStepped    -        Wall clock changed (wall clock stepped by -3600.000 s; alarm delays, pauses and escalation run on the monotonic clock and did not move)
    "#]]);
}

fn restored(condition: &str, priority: Priority, onset: Ms) -> Restore {
    Restore {
        bed: BED.into(),
        condition: Condition::from_key(condition).unwrap(),
        label: "restored".into(),
        priority,
        escalated: false,
        onset_wall_ms: onset,
        value: Some(35.0),
        limit: Some(40.0),
        cause_active: true,
        acknowledged: None,
        previous_id: 7,
    }
}

/// After a restart the alarms of the log come back as they were: a latched HIGH sounds until
/// acknowledged, an acknowledged one stays silent and ends with its cause, and an unanswered
/// MEDIUM escalates on the time of its first onset, not of the restart.
#[test]
fn alarms_restored_after_a_restart_keep_their_state() {
    let mut t = Timeline::new(Policy::default());
    t.at(100_000);
    t.e.number_from(8);
    let latched = Restore {
        cause_active: false,
        label: "Extreme bradycardia".into(),
        ..restored("limit:hr_extreme_low", Priority::High, 40_000)
    };
    let acked = Restore {
        acknowledged: Some(("nurse.ana".into(), 60_000)),
        label: "SpO2 low".into(),
        ..restored("limit:spo2_low", Priority::Medium, 50_000)
    };
    // Raised 90 s before now: escalation (120 s) is 30 s away.
    let unanswered = Restore {
        label: "RR high".into(),
        ..restored("limit:rr_high", Priority::Medium, 10_000)
    };
    for r in [latched, acked, unanswered] {
        assert!(t.e.restore(t.t, r).is_some());
    }
    t.e.log_restart(t.t, "Station restarted; 3 alarms restored".into());
    assert_eq!(t.e.alarms().len(), 3);
    assert!(
        t.e.alarms().iter().all(|a| a.id >= 8),
        "numbered after the log"
    );
    // The same condition again is not doubled.
    assert!(t
        .e
        .restore(t.t, restored("limit:rr_high", Priority::Medium, 10_000))
        .is_none());
    t.flush();
    t.at(119_000);
    t.series(MDC_PULS_OXIM_SAT_O2, 120, 122, |_| 97.0);
    t.at(125_000);
    t.ack_first("charge.cho");
    t.at(131_000);
    t.check(expect![[r#"
        0100.0s bed-03  Restored        high     Extreme bradycardia value=35 limit=40 (alarm 7 before the restart, raised at 40000, latched)
        0100.0s bed-03  Restored        medium   SpO2 low value=35 limit=40 (alarm 7 before the restart, raised at 50000)
        0100.0s bed-03  Restored        medium   RR high value=35 limit=40 (alarm 7 before the restart, raised at 10000)
        0100.0s station Restarted       -        Station restarted; 3 alarms restored
        0100.0s sound: high
        0120.0s bed-03  Ended           medium   SpO2 low value=97 limit=40
        0125.0s bed-03  Acknowledged    high     Extreme bradycardia value=35 limit=40 by=charge.cho
        0125.0s bed-03  Reset           high     Extreme bradycardia value=35 limit=40 by=charge.cho
        0125.0s sound: medium
        0130.0s bed-03  Escalated       high     RR high value=35 limit=40
        0130.0s sound: high
    "#]]);
}

#[test]
fn condition_keys_read_back() {
    for c in [
        Condition::Limit("hr_low".into()),
        Condition::Device("a-17".into()),
        Condition::Technical(Technical::DeviceSilent),
        Condition::Technical(Technical::NoValue(MDC_PULS_OXIM_SAT_O2)),
        Condition::Technical(Technical::SentinelDown),
        Condition::Peer("st-4w".into()),
    ] {
        assert_eq!(
            Condition::from_key(&c.key()),
            Some(c.clone()),
            "{}",
            c.key()
        );
    }
    for bad in [
        "",
        "limit:",
        "tech:nonsense",
        "tech:no_value:x",
        "what:ever",
    ] {
        assert_eq!(Condition::from_key(bad), None, "{bad}");
    }
}

/// A peer station stops monitoring: a HIGH technical alarm of this station, sounding until it
/// is acknowledged (then silent) and ending when the peer is back.
#[test]
fn a_peer_station_not_monitoring_is_a_high_technical_alarm() {
    let mut t = Timeline::new(Policy::default());
    t.at(1_000);
    let label = "Station 4 West not monitoring — its beds are unwatched";
    t.e.handle_peer(
        t.t,
        "st-4w",
        true,
        label,
        "its last will: connection to the core lost",
    );
    t.flush();
    t.at(3_000);
    t.ack_first("charge.cho");
    t.at(5_000);
    t.e.handle_peer(t.t, "st-4w", false, label, "");
    t.flush();
    t.check(expect![[r#"
        0001.0s station Raised          high     Station 4 West not monitoring — its beds are unwatched (its last will: connection to the core lost)
        0001.0s sound: high
        0003.0s station Acknowledged    high     Station 4 West not monitoring — its beds are unwatched by=charge.cho
        0003.0s sound: silent
        0005.0s station Ended           high     Station 4 West not monitoring — its beds are unwatched
    "#]]);
}

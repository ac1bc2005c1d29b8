//! A job's timeline as `-v` shows it: the first step's time of day (UTC),
//! then each later step as the time since that first one.

use flux_api::Timeline;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::table;

/// The steps of a timeline in the order they happen, with their labels;
/// steps not (yet) reached are left out.
fn steps(timeline: &Timeline) -> Vec<(&'static str, Timestamp)> {
    [
        ("first seen", timeline.first_seen),
        ("queued", timeline.queued),
        ("committed", timeline.committed),
        ("pushed", timeline.pushed),
        ("applied", timeline.applied),
        ("ready", timeline.ready),
    ]
    .into_iter()
    .filter_map(|(label, at)| at.map(|at| (label, at)))
    .collect()
}

/// Two aligned columns, e.g. `queued     13:02:23.120 UTC` then
/// `pushed     +0.310s`; empty when the daemon recorded no step.
pub fn render(timeline: &Timeline) -> String {
    let steps = steps(timeline);
    let Some(&(_, start)) = steps.first() else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = steps
        .iter()
        .enumerate()
        .map(|(n, &(label, at))| {
            let when = if n == 0 {
                time_of_day(at)
            } else {
                since(start, at)
            };
            vec![label.to_string(), when]
        })
        .collect();
    table::render(&rows)
}

/// `13:02:23.120 UTC`.
fn time_of_day(at: Timestamp) -> String {
    let civil = at.to_zoned(TimeZone::UTC);
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        civil.hour(),
        civil.minute(),
        civil.second(),
        civil.millisecond()
    )
}

/// `+0.150s`, `+12.300s`, `+2m05.0s`; a step recorded before the first
/// (clocks of different machines) shows with a minus sign.
fn since(start: Timestamp, at: Timestamp) -> String {
    let seconds = at.duration_since(start).as_secs_f64();
    let sign = if seconds < 0.0 { '-' } else { '+' };
    let seconds = seconds.abs();
    if seconds < 60.0 {
        return format!("{sign}{seconds:.3}s");
    }
    let minutes = (seconds / 60.0).floor();
    format!("{sign}{minutes}m{:04.1}s", seconds - minutes * 60.0)
}

#[cfg(test)]
mod tests {
    use flux_api::Timeline;
    use jiff::Timestamp;

    fn at(text: &str) -> Option<Timestamp> {
        Some(text.parse().expect("a valid timestamp"))
    }

    #[test]
    fn steps_after_the_first_show_the_time_since_it() {
        let timeline = Timeline {
            first_seen: at("2026-11-22T12:00:01.234Z"),
            queued: at("2026-11-22T12:00:01.236Z"),
            committed: at("2026-11-22T12:00:01.384Z"),
            pushed: at("2026-11-22T12:00:01.544Z"),
            applied: at("2026-11-22T12:00:02.134Z"),
            ready: at("2026-11-22T12:00:04.334Z"),
        };
        assert_eq!(
            super::render(&timeline),
            "first seen  12:00:01.234 UTC\n\
             queued      +0.002s\n\
             committed   +0.150s\n\
             pushed      +0.310s\n\
             applied     +0.900s\n\
             ready       +3.100s\n"
        );
    }

    #[test]
    fn a_release_starts_at_queued_and_shows_only_the_steps_reached() {
        let timeline = Timeline {
            queued: at("2026-11-22T13:02:23.120Z"),
            pushed: at("2026-11-22T13:04:28.120Z"),
            ..Timeline::default()
        };
        assert_eq!(
            super::render(&timeline),
            "queued  13:02:23.120 UTC\npushed  +2m05.0s\n"
        );
    }

    #[test]
    fn an_empty_timeline_renders_nothing() {
        assert_eq!(super::render(&Timeline::default()), "");
    }

    #[test]
    fn a_step_recorded_before_the_first_gets_a_minus_sign() {
        let start: Timestamp = "2026-11-22T13:00:01Z".parse().expect("valid");
        let earlier: Timestamp = "2026-11-22T13:00:00.5Z".parse().expect("valid");
        assert_eq!(super::since(start, earlier), "-0.500s");
    }
}

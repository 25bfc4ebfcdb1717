//! The simulator's fault and latency specs, as written on the command line.

use std::time::Duration;

use rand::RngExt;
use rand_distr::{Distribution, LogNormal};

/// How long a message takes on a link.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Log-normal around a per-link median (the median itself spread
    /// ±50 % over links), with shape `sigma`: a heavy right tail.
    LogNormal { median: Duration, sigma: f64 },
}

impl Latency {
    /// `fixed:10ms` or `lognormal:50ms[:0.6]`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let kind = parts.next().unwrap_or_default();
        let bad = || format!("--latency {s}: expected fixed:DURATION or lognormal:MEDIAN[:SIGMA]");
        let duration = parts.next().map(parse_duration).ok_or_else(bad)??;
        let latency = match kind {
            "fixed" => Latency::Fixed(duration),
            "lognormal" => {
                let sigma = match parts.next() {
                    Some(x) => x.parse::<f64>().map_err(|_| bad())?,
                    None => 0.6,
                };
                if !(0.0..=3.0).contains(&sigma) {
                    return Err(format!("--latency {s}: sigma must be within 0..=3"));
                }
                Latency::LogNormal {
                    median: duration,
                    sigma,
                }
            }
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(latency)
    }

    /// One message's delay on the link `from → to` (`link` is a stable
    /// hash of the pair, spreading medians over links).
    pub(crate) fn sample(&self, link: u64, rng: &mut impl rand::Rng) -> Duration {
        match self {
            Latency::Fixed(d) => *d,
            Latency::LogNormal { median, sigma } => {
                let spread = 0.5 + (link % 1024) as f64 / 1024.0;
                let m = median.as_secs_f64() * spread;
                let d = LogNormal::new(m.ln(), *sigma)
                    .map(|d| d.sample(rng))
                    .unwrap_or(m);
                Duration::from_secs_f64(d.min(30.0))
            }
        }
    }
}

/// The nodes split into two groups for a while: nothing crosses.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Partition {
    /// The fraction of nodes cut off (the last ones by index, after the
    /// shuffle that assigns roles).
    pub(crate) fraction: f64,
    pub(crate) start: Duration,
    pub(crate) length: Duration,
}

impl Partition {
    /// `FRACTION@START+LENGTH`, e.g. `0.3@20s+60s`.
    pub(crate) fn parse(s: &str, nodes: usize) -> Result<Self, String> {
        let bad = || format!("--partition {s}: expected FRACTION@START+LENGTH, e.g. 0.3@20s+60s");
        let (fraction, rest) = s.split_once('@').ok_or_else(bad)?;
        let (start, length) = rest.split_once('+').ok_or_else(bad)?;
        let fraction: f64 = fraction.parse().map_err(|_| bad())?;
        let cut = (fraction * nodes as f64).round() as usize;
        if cut == 0 || cut >= nodes {
            return Err(format!(
                "--partition {s}: {fraction} of {nodes} nodes is {cut}: the split must name at least one node on each side"
            ));
        }
        Ok(Self {
            fraction,
            start: parse_duration(start)?,
            length: parse_duration(length)?,
        })
    }
}

/// Nodes crashing and restarting.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Churn {
    /// The fraction of nodes that crash each interval.
    pub(crate) fraction: f64,
    pub(crate) every: Duration,
    /// How long a crashed node stays down.
    pub(crate) down: Duration,
    /// The fraction of nodes that join only after the first interval.
    pub(crate) late: f64,
    /// The fraction of nodes that leave for good at the first interval.
    pub(crate) leave: f64,
}

impl Churn {
    /// `FRACTION/EVERY[,down=D][,late=F][,leave=F]`, e.g. `0.1/60s,down=5s`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("--churn {s}: {why} (expected FRACTION/EVERY[,down=D][,late=F][,leave=F])")
        };
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (fraction, every) = head
            .split_once('/')
            .ok_or_else(|| bad("no FRACTION/EVERY"))?;
        let mut churn = Self {
            fraction: fraction.parse().map_err(|_| bad("bad FRACTION"))?,
            every: parse_duration(every)?,
            down: Duration::from_secs(5),
            late: 0.0,
            leave: 0.0,
        };
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| bad("bad option"))?;
            match k {
                "down" => churn.down = parse_duration(v)?,
                "late" => churn.late = v.parse().map_err(|_| bad("bad late"))?,
                "leave" => churn.leave = v.parse().map_err(|_| bad("bad leave"))?,
                _ => return Err(bad("unknown option")),
            }
        }
        let fractions = [churn.fraction, churn.late, churn.leave];
        if fractions.iter().any(|f| !(0.0..1.0).contains(f)) {
            return Err(bad("fractions must be within 0..1"));
        }
        if churn.every.is_zero() {
            return Err(bad("EVERY must be positive"));
        }
        Ok(churn)
    }
}

/// `250ms`, `5s`, `2m`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (e.g. 250ms, 5s, 2m)");
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A uniform fraction draw.
pub(crate) fn chance(rng: &mut impl rand::Rng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(
            Latency::parse("fixed:10ms"),
            Ok(Latency::Fixed(Duration::from_millis(10)))
        );
        assert!(matches!(
            Latency::parse("lognormal:50ms:0.5"),
            Ok(Latency::LogNormal { sigma, .. }) if sigma == 0.5
        ));
        assert!(Latency::parse("gauss:1ms").is_err());
        let p = Partition::parse("0.3@20s+60s", 100).expect("valid");
        assert_eq!(p.length, Duration::from_secs(60));
        let none = Partition::parse("0.001@1s+1s", 100).expect_err("names no node");
        assert!(none.contains("at least one node"), "{none}");
        let c = Churn::parse("0.1/60s,down=2s,late=0.05").expect("valid");
        assert_eq!(
            (c.fraction, c.down, c.late),
            (0.1, Duration::from_secs(2), 0.05)
        );
        assert!(Churn::parse("1.5/60s").is_err());
        assert!(Churn::parse("0.1/60s,speed=3").is_err());
    }

    #[test]
    fn lognormal_latency_has_its_median_and_a_tail() {
        use rand::SeedableRng;
        let l = Latency::parse("lognormal:50ms:0.6").expect("valid");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| l.sample(512, &mut rng).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((0.045..0.055).contains(&p50), "p50 {p50}");
        assert!(p99 > 3.0 * p50, "p99 {p99} is a tail");
    }
}

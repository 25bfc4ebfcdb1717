//! From timely streams to differential collections: each record becomes an
//! update at the time it travels with.

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;

/// A collection in which each `(record, weight)` adds `weight` copies of
/// `record` at the record's time (a weight may be negative: a retraction).
pub fn weighted<'scope, D>(
    stream: Stream<'scope, u64, Vec<(D, isize)>>,
) -> VecCollection<'scope, u64, D, isize>
where
    D: timely::ExchangeData,
{
    stream
        .unary::<CapacityContainerBuilder<Vec<(D, u64, isize)>>, _, _, _>(
            Pipeline,
            "Weighted",
            |_, _| {
                |input, output| {
                    input.for_each(|cap, data| {
                        // Vec streams carry one time per message.
                        if let Some(&time) = cap.least() {
                            output
                                .session(&cap)
                                .give_iterator(data.drain(..).map(|(d, w)| (d, time, w)));
                        }
                    });
                }
            },
        )
        .as_collection()
}

/// A collection holding each record once, at the record's time.
pub fn records<'scope, D>(
    stream: Stream<'scope, u64, Vec<D>>,
) -> VecCollection<'scope, u64, D, isize>
where
    D: timely::ExchangeData,
{
    use timely::dataflow::operators::vec::Map;
    weighted(stream.map(|d| (d, 1)))
}

//! The example functions (scripts/guests builds them) behave as documented.

use orb_functions::{CallOptions, Error, Limits};

use crate::{example, runtime};

fn run(name: &str, input: &str) -> Result<String, Error> {
    let rt = runtime();
    let f = rt.load(&example(name))?;
    let out = rt.call(&f, input.as_bytes(), &CallOptions::default())?;
    Ok(String::from_utf8(out.output).expect("utf-8 output"))
}

#[test]
fn the_useful_functions_compute_what_they_say() {
    assert_eq!(run("echo", "héllo").unwrap(), "héllo");
    assert_eq!(run("reverse", "héllo").unwrap(), "olléh");
    assert_eq!(
        run("wordcount", "To be, or not to be").unwrap(),
        r#"{"be":2,"not":1,"or":1,"to":2}"#
    );
    assert_eq!(
        run("hash", "orb").unwrap(),
        blake3::hash(b"orb").to_hex().as_str()
    );
    assert_eq!(run("fib", "20").unwrap(), "6765");
    assert_eq!(run("upper", "c too").unwrap(), "C TOO");
}

#[test]
fn bad_input_is_a_guest_exit_with_a_message() {
    let err = run("fib", "twenty").unwrap_err();
    assert!(
        matches!(&err, Error::Exit { code: 1, log, .. } if log.contains("fib wants a number")),
        "{err}"
    );
}

#[test]
fn the_adversarial_functions_each_get_their_error() {
    let rt = runtime();
    let call = |name: &str, limits: Limits| {
        let f = rt.load(&example(name)).expect("loads");
        rt.call(&f, b"", &CallOptions::with_limits(limits))
            .unwrap_err()
    };
    let small = Limits {
        fuel: 50_000_000,
        memory_bytes: 16 << 20,
        output_bytes: 64 << 10,
        ..Limits::default()
    };
    assert!(matches!(
        call("spin", small.clone()),
        Error::OutOfFuel { .. }
    ));
    assert!(matches!(
        call("balloon", small.clone()),
        Error::MemoryLimit { .. }
    ));
    assert!(matches!(
        call("flood", small.clone()),
        Error::OutputTooLarge { .. }
    ));
    let unmetered = Limits {
        fuel: u64::MAX,
        timeout: std::time::Duration::from_millis(100),
        ..small
    };
    assert!(matches!(call("spin", unmetered), Error::Timeout { .. }));
}

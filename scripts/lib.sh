# Shared by Orb's scripts: sourced, not run.
# The cargo target dir may live outside the clone (as CI caches do); the
# scripts default to the clone's own target/ so a fresh checkout is self-contained.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export ORB_FUNCTIONS_DIR="${ORB_FUNCTIONS_DIR:-$CARGO_TARGET_DIR/functions}"

step() { printf '\033[1;32m==>\033[0m %s\n' "$*" >&2; }

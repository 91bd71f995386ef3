#!/usr/bin/env bash
# The figures of docs/embedded.md's "Footprint" section, measured: code size of the core's step
# algorithm and of two whole no_std programs (release, opt-level "s", LTO, panic=abort: the
# `embedded` profile), and RAM per machine, for a Cortex-M4F (thumbv7em-none-eabihf).
#
# Needs the rustup target (`rustup target add thumbv7em-none-eabihf`) and GNU binutils' `nm`
# and `size`, which read any ELF file. Run from anywhere: `no_std_core/check/footprint.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=thumbv7em-none-eabihf
cargo build -q -p interstate-core-check --features bare-metal --target "$T" --profile embedded --bins
D="target/$T/embedded"

# interstate-core-minimal-native is interstate-core-minimal with the chart compiled to native
# Rust (`interstate compile --native`) in place of the interpreter: the two side by side.
for bin in interstate-core-minimal interstate-core-minimal-native interstate-core-check; do
    echo "== $bin ($D/$bin)"
    size -A "$D/$bin" | awk '$1 ~ /^\.(text|rodata|data|bss)$/ { printf "  section %-8s %6d bytes\n", $1, $2 }'
    # Code by where it comes from: the sizes nm reports for each function symbol.
    nm --size-sort -S -C "$D/$bin" | awk '
        function hex(h,   i, n, c) { n = 0; h = tolower(h); for (i = 1; i <= length(h); i++) { c = index("0123456789abcdef", substr(h, i, 1)) - 1; n = n * 16 + c }; return n }
        $3 ~ /^[tTwW]$/ {
            size = hex($2); name = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
            if (name ~ /native_chart::/) g = "the generated macrostep (native_chart)"
            else if (name ~ /interstate_core::machine::/) g = "step algorithm (interstate_core::machine)"
            else if (name ~ /interstate_core::chart::/) g = "chart validation (interstate_core::chart)"
            else if (name ~ /interstate_core::(serial|endpoint)/) g = "serial link (interstate_core::serial, endpoint)"
            else if (name ~ /postcard|serde|interstate_core::(wire|image)/) g = "frame and image codecs (wire, image, postcard, serde)"
            else if (name ~ /interstate_core::/) g = "rest of interstate_core"
            else if (name ~ /interstate_core_check/) g = "the program itself (interstate_core_check, _start)"
            else if (name == "_start") g = "the program itself (interstate_core_check, _start)"
            else g = "compiler_builtins and libcore (memcpy, fmt, ...)"
            sum[g] += size; total += size
        }
        END {
            for (g in sum) printf "  %6d bytes  %s\n", sum[g], g
            printf "  %6d bytes  all functions\n", total
            printf "  %6d bytes  all functions but compiler_builtins and libcore\n", total - sum["compiler_builtins and libcore (memcpy, fmt, ...)"]
        }' | sort -k3
    for sym in LAMP_MACHINE_SIZE SIZED_MACHINE_SIZE NATIVE_MACHINE_SIZE LAMP_LINK_SIZE; do
        nm -S "$D/$bin" | awk -v s="$sym" '
            function hex(h,   i, n, c) { n = 0; h = tolower(h); for (i = 1; i <= length(h); i++) { c = index("0123456789abcdef", substr(h, i, 1)) - 1; n = n * 16 + c }; return n }
            $4 == s { printf "  RAM: %-18s %d bytes\n", s, hex($2) }'
    done
done

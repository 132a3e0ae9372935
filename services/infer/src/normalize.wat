;; infer's pixel normalisation as WebAssembly: the table lookup of subjects/image-normalization.ts (normalizeChw),
;; the same bits for every value, at about a third of the cost. normalize.wasm beside it is this file compiled
;; (`npm run build:wasm` rewrites it; test/unit/pixel-normalizer.test.ts checks that it is up to date).
;;
;; The memory is the caller's (imported as env.memory, one per batch slot; pixel-normalizer.ts lays it out). The
;; table of one channel is 256 float32 bit patterns (u32) at `lut`, written from subjects/image-normalization.ts;
;; `src` holds `n` uint8 pixels of that channel's plane, `dst` receives their `n` float32 values. Plain scalar code:
;; a byte load, a table load and a store per value, unrolled by 8 (wasm32 accesses are bounded by guard pages, not
;; checked one by one, which is most of why this beats the same loop in JavaScript).
(module
  (import "env" "memory" (memory 1))
  (func (export "lookup") (param $src i32) (param $dst i32) (param $n i32) (param $lut i32)
    (local $end i32)
    (local $end8 i32)
    (local.set $end (i32.add (local.get $src) (local.get $n)))
    (local.set $end8 (i32.add (local.get $src) (i32.and (local.get $n) (i32.const -8))))
    (block $done8
      (loop $by8
        (br_if $done8 (i32.ge_u (local.get $src) (local.get $end8)))
        (i32.store offset=0 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=0 (local.get $src)) (i32.const 2)))))
        (i32.store offset=4 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=1 (local.get $src)) (i32.const 2)))))
        (i32.store offset=8 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=2 (local.get $src)) (i32.const 2)))))
        (i32.store offset=12 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=3 (local.get $src)) (i32.const 2)))))
        (i32.store offset=16 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=4 (local.get $src)) (i32.const 2)))))
        (i32.store offset=20 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=5 (local.get $src)) (i32.const 2)))))
        (i32.store offset=24 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=6 (local.get $src)) (i32.const 2)))))
        (i32.store offset=28 (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u offset=7 (local.get $src)) (i32.const 2)))))
        (local.set $src (i32.add (local.get $src) (i32.const 8)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $by8)))
    (block $done
      (loop $by1
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (i32.store (local.get $dst)
          (i32.load (i32.add (local.get $lut) (i32.shl (i32.load8_u (local.get $src)) (i32.const 2)))))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (br $by1))))
)

;; A WASI (preview 1) command for the Wasm pod tests, written from the WASI spec.
;; argv[1] picks what it does (its first letter):
;;   hello (default): prints "arg <a>" per argument, "env <k=v>" per variable, "file <text>"
;;     with in.txt of the first preopened directory (fd 3) or "nofile", writes out.txt into the
;;     second one (fd 4) ("wrote" / "nowrite"), "to stderr" on stderr, then exits with the
;;     digit the last argument starts with (0 if none);
;;   loop: prints "looping", then spins forever (stopped by the CPU limit);
;;   bomb: prints "allocating", grows its memory a page at a time, traps when refused;
;;   sleep: prints "tick" every 200 ms forever (poll_oneoff on the monotonic clock).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "arg ")
  (data (i32.const 260) "env ")
  (data (i32.const 264) "file ")
  (data (i32.const 270) "\n")
  (data (i32.const 272) "nofile\n")
  (data (i32.const 280) "in.txt")
  (data (i32.const 288) "out.txt")
  (data (i32.const 296) "written by wasm\n")
  (data (i32.const 320) "to stderr\n")
  (data (i32.const 336) "tick\n")
  (data (i32.const 344) "looping\n")
  (data (i32.const 352) "allocating\n")
  (data (i32.const 368) "wrote\n")
  (data (i32.const 376) "nowrite\n")

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))

  ;; prints prefix + each C string of a pointer array + "\n"
  (func $lines (param $ptrs i32) (param $count i32) (param $prefix i32) (local $i i32) (local $s i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (local.set $s (i32.load (i32.add (local.get $ptrs) (i32.mul (local.get $i) (i32.const 4)))))
      (call $write (i32.const 1) (local.get $prefix) (i32.const 4))
      (call $write (i32.const 1) (local.get $s) (call $strlen (local.get $s)))
      (call $write (i32.const 1) (i32.const 270) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  (func $sleep_200ms
    ;; subscription at 64: userdata 0, tag 0 (clock), clock id 1 (monotonic), timeout 200 ms, relative
    (i64.store (i32.const 64) (i64.const 0))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.const 200000000))
    (i64.store (i32.const 96) (i64.const 1000000))
    (i32.store16 (i32.const 104) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 40))))

  (func $hello (param $argc i32) (local $envc i32) (local $fd i32) (local $last i32) (local $c i32)
    (call $lines (i32.const 1024) (local.get $argc) (i32.const 256))
    (drop (call $environ_sizes_get (i32.const 24) (i32.const 28)))
    (local.set $envc (i32.load (i32.const 24)))
    (if (i32.le_u (local.get $envc) (i32.const 250))
      (then
        (drop (call $environ_get (i32.const 8192) (i32.const 9216)))
        (call $lines (i32.const 8192) (local.get $envc) (i32.const 260))))
    ;; read in.txt from the first preopen (fd 3)
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 1) (i32.const 280) (i32.const 6) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
      (then
        (local.set $fd (i32.load (i32.const 32)))
        (i32.store (i32.const 0) (i32.const 32768))
        (i32.store (i32.const 4) (i32.const 4096))
        (drop (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 36)))
        (drop (call $fd_close (local.get $fd)))
        (call $write (i32.const 1) (i32.const 264) (i32.const 5))
        (call $write (i32.const 1) (i32.const 32768) (i32.load (i32.const 36)))
        (call $write (i32.const 1) (i32.const 270) (i32.const 1)))
      (else (call $write (i32.const 1) (i32.const 272) (i32.const 7))))
    ;; write out.txt into the second preopen (fd 4): O_CREAT | O_TRUNC
    (if (i32.eqz (call $path_open (i32.const 4) (i32.const 1) (i32.const 288) (i32.const 7) (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32)))
      (then
        (local.set $fd (i32.load (i32.const 32)))
        (call $write (local.get $fd) (i32.const 296) (i32.const 16))
        (drop (call $fd_close (local.get $fd)))
        (call $write (i32.const 1) (i32.const 368) (i32.const 6)))
      (else (call $write (i32.const 1) (i32.const 376) (i32.const 8))))
    (call $write (i32.const 2) (i32.const 320) (i32.const 10))
    ;; exit with the digit the last argument starts with
    (if (i32.gt_u (local.get $argc) (i32.const 1))
      (then
        (local.set $last (i32.load (i32.add (i32.const 1024) (i32.mul (i32.sub (local.get $argc) (i32.const 1)) (i32.const 4)))))
        (local.set $c (i32.load8_u (local.get $last)))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
          (then (call $proc_exit (i32.sub (local.get $c) (i32.const 48)))))))
    (call $proc_exit (i32.const 0)))

  (func (export "_start") (local $argc i32) (local $mode i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (local.set $argc (i32.load (i32.const 16)))
    (if (i32.gt_u (local.get $argc) (i32.const 60)) (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (if (i32.gt_u (local.get $argc) (i32.const 1))
      (then (local.set $mode (i32.load8_u (i32.load (i32.const 1028))))))
    (if (i32.eq (local.get $mode) (i32.const 108)) ;; l
      (then
        (call $write (i32.const 1) (i32.const 344) (i32.const 8))
        (loop $spin (br $spin))))
    (if (i32.eq (local.get $mode) (i32.const 98)) ;; b
      (then
        (call $write (i32.const 1) (i32.const 352) (i32.const 11))
        (loop $grow
          (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
          (br $grow))))
    (if (i32.eq (local.get $mode) (i32.const 115)) ;; s
      (then
        (loop $tick
          (call $write (i32.const 1) (i32.const 336) (i32.const 5))
          (call $sleep_200ms)
          (br $tick))))
    (call $hello (local.get $argc)))
)

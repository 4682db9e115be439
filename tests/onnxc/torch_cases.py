"""IR cases of the tensor, elementwise, logic and reduction op kinds for tests/backends/test_torch_lowering.py.

That test runs each graph through the interpreter and the torch lowering on seeded U(-1, 1) inputs in
f32 and f64 (`{t}`) and requires agreement; bool results are cast to `{t}` so that they compare as
numbers, and integers are made from floats (1/x truncated is a non-zero integer, since |x| < 1).
"""

CASES = {
    "onnxc_unary": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4], %c: {t}[2,3,4], %d: {t}[2,3,4], \
%e: {t}[2,3,4]) {
  %0 = nn.abs(%x) : {t}[2,3,4]
  %1 = nn.sqrt(%0) : {t}[2,3,4]
  %2 = nn.log(%0) : {t}[2,3,4]
  %a = nn.add(%1, %2) : {t}[2,3,4]
  %3 = nn.exp(%x) : {t}[2,3,4]
  %b = nn.reciprocal(%3) : {t}[2,3,4]
  %4 = nn.neg(%x) : {t}[2,3,4]
  %c = nn.sign(%4) : {t}[2,3,4]
  %5 = nn.reciprocal(%x) : {t}[2,3,4]
  %6 = nn.floor(%5) : {t}[2,3,4]
  %7 = nn.ceil(%5) : {t}[2,3,4]
  %d = nn.sub(%6, %7) : {t}[2,3,4]
  %e = nn.round(%5) : {t}[2,3,4]
}""",
    "onnxc_logic": """graph @g(%x: {t}[2,3,4], %y: {t}[3,1]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4], %c: {t}[2,3,4]) {
  %0 = nn.less(%x, %y) : bool[2,3,4]
  %1 = nn.greater_equal(%x, %y) : bool[2,3,4]
  %2 = nn.xor(%0, %1) : bool[2,3,4]
  %3 = nn.less_equal(%x, %y) : bool[2,3,4]
  %4 = nn.greater(%x, %y) : bool[2,3,4]
  %5 = nn.and(%3, %4) : bool[2,3,4]
  %6 = nn.or(%2, %5) : bool[2,3,4]
  %7 = nn.not(%6) : bool[2,3,4]
  %8 = nn.equal(%0, %7) : bool[2,3,4]
  %9 = nn.isnan(%x) : bool[2,3,4]
  %10 = nn.isinf(%x) {detect_negative = false} : bool[2,3,4]
  %11 = nn.or(%9, %10) : bool[2,3,4]
  %12 = nn.or(%8, %11) : bool[2,3,4]
  %a = nn.cast(%12) {to = {t}} : {t}[2,3,4]
  %b = nn.where(%0, %x, %y) : {t}[2,3,4]
  %13 = nn.maximum(%x, %y) : {t}[2,3,4]
  %14 = nn.minimum(%x, %y) : {t}[2,3,4]
  %c = nn.sub(%13, %14) : {t}[2,3,4]
}""",
    "onnxc_integer": """graph @g(%x: {t}[2,3,4], %y: {t}[2,3,4]) -> (%a: i32[2,3,4], %b: i32[2,3,4], %c: i32[2,3,4], \
%d: {t}[2,3,4], %e: i32[2,3,4]) {
  %0 = nn.reciprocal(%x) : {t}[2,3,4]
  %1 = nn.cast(%0) {to = i32} : i32[2,3,4]
  %2 = nn.reciprocal(%y) : {t}[2,3,4]
  %3 = nn.cast(%2) {to = i32} : i32[2,3,4]
  %4 = nn.mod(%1, %3) : i32[2,3,4]
  %5 = nn.mod(%1, %3) {fmod = true} : i32[2,3,4]
  %a = nn.add(%4, %5) : i32[2,3,4]
  %6 = nn.greater(%x, %y) : bool[2,3,4]
  %7 = nn.cast(%6) {to = i32} : i32[2,3,4]
  %8 = nn.shift_left(%1, %7) : i32[2,3,4]
  %9 = nn.abs(%1) : i32[2,3,4]
  %10 = nn.shift_right(%9, %7) : i32[2,3,4]
  %11 = nn.bitwise_and(%8, %10) : i32[2,3,4]
  %12 = nn.bitwise_or(%8, %3) : i32[2,3,4]
  %13 = nn.bitwise_xor(%11, %12) : i32[2,3,4]
  %b = nn.bitwise_not(%13) : i32[2,3,4]
  %c = nn.pow(%1, %7) : i32[2,3,4]
  %14 = nn.abs(%x) : {t}[2,3,4]
  %15 = nn.pow(%14, %y) : {t}[2,3,4]
  %16 = nn.pow(%14, %7) : {t}[2,3,4]
  %d = nn.add(%15, %16) : {t}[2,3,4]
  %17 = nn.maximum(%1, %3) : i32[2,3,4]
  %e = nn.neg(%17) : i32[2,3,4]
}""",
    "onnxc_reduce": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,1,4], %b: {t}[2], %c: {t}[1,1,1], %d: {t}[3], \
%e: {t}[2,4], %f: {t}[2,3], %g: {t}[2,3,1], %h: {t}[], %k: {t}[2,4], %m: {t}[2,4], %n: i64[2,1,4], \
%p: i64[3,4]) {
  %a = nn.reduce(%x) {mode = sum, axes = [1]} : {t}[2,1,4]
  %b = nn.reduce(%x) {mode = mean, axes = [1, -1], keepdims = false} : {t}[2]
  %c = nn.reduce(%x) {mode = max} : {t}[1,1,1]
  %d = nn.reduce(%x) {mode = min, axes = [0, 2], keepdims = false} : {t}[3]
  %e = nn.reduce(%x) {mode = prod, axes = [1], keepdims = false} : {t}[2,4]
  %f = nn.reduce(%x) {mode = l1, axes = [2], keepdims = false} : {t}[2,3]
  %g = nn.reduce(%x) {mode = l2, axes = [2]} : {t}[2,3,1]
  %0 = nn.abs(%x) : {t}[2,3,4]
  %h = nn.reduce(%0) {mode = log_sum, keepdims = false} : {t}[]
  %k = nn.reduce(%x) {mode = log_sum_exp, axes = [1], keepdims = false} : {t}[2,4]
  %m = nn.reduce(%x) {mode = sum_square, axes = [1], keepdims = false} : {t}[2,4]
  %n = nn.arg_reduce(%x) {axis = 1} : i64[2,1,4]
  %p = nn.arg_reduce(%x) {largest = false, axis = 0, keepdims = false, select_last_index = true} : i64[3,4]
}""",
    "onnxc_move": """graph @g(%x: {t}[2,3,4], %y: {t}[3,1]) -> (%a: {t}[2,3,4], %b: {t}[4,3,4], %c: {t}[2,2,2], \
%d: {t}[2,2,4], %e: {t}[2,3,4], %f: {t}[2,5,7], %h: {t}[2,5,7], %k: {t}[2,5,7], %m: {t}[2,5,7]) {
  weight @pos_idx : i64[2]
  weight @pos_eidx : i64[2,3,4]
  %a = nn.expand(%y) {shape = [2, 1, 4]} : {t}[2,3,4]
  %b = nn.tile(%x) {repeats = [2, 1, 1]} : {t}[4,3,4]
  %c = nn.slice(%x) {starts = [-1, 0], ends = [-9223372036854775807, 4], axes = [1, -1], steps = [-2, 2]} \
: {t}[2,2,2]
  %d = nn.gather(%x, @pos_idx) {axis = 1} : {t}[2,2,4]
  %e = nn.gather_elements(%x, @pos_eidx) {axis = 2} : {t}[2,3,4]
  %f = nn.pad(%x) {pads = [0, 1, 2, 0, 1, 1], value = 0.5} : {t}[2,5,7]
  %h = nn.pad(%x) {pads = [0, 1, 2, 0, 1, 1], mode = reflect} : {t}[2,5,7]
  %k = nn.pad(%x) {pads = [0, 1, 2, 0, 1, 1], mode = edge} : {t}[2,5,7]
  %m = nn.pad(%x) {pads = [0, 1, 2, 0, 1, 1], mode = wrap} : {t}[2,5,7]
}""",
}

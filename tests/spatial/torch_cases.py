"""IR cases of the spatial, normalization and activation ops for tests/backends/test_torch_lowering.py
(interpreter vs torch lowering, f32 and f64); `{t}` is the float dtype under test."""

SPATIAL_CASES = {
    "conv1d_group_stride_pads": """graph @g(%x: {t}[2,4,9]) -> (%y: {t}[2,6,3]) {
  weight @w : {t}[6,2,3]
  weight @b : {t}[6]
  %y = nn.conv(%x, @w, @b) {strides = [2], pads = [1, 0], dilations = [2], group = 2} : {t}[2,6,3]
}""",
    "conv3d": """graph @g(%x: {t}[1,2,4,5,4]) -> (%y: {t}[1,3,3,2,4]) {
  weight @w : {t}[3,2,2,3,2]
  %y = nn.conv(%x, @w) {strides = [1, 2, 1], pads = [0, 0, 1, 0, 1, 0], dilations = [1, 1, 1]} : {t}[1,3,3,2,4]
}""",
    "pools_1d": """graph @g(%x: {t}[2,3,10]) -> (%a: {t}[2,3,5], %b: {t}[2,3,5], %c: {t}[2,3,1]) {
  %a = nn.maxpool(%x) {kernel = [3], strides = [2], pads = [1, 1], dilations = [2], ceil_mode = true} : {t}[2,3,5]
  %b = nn.avgpool(%x) {kernel = [3], strides = [2], pads = [1, 1], dilations = [1], count_include_pad = true} \
: {t}[2,3,5]
  %c = nn.global_maxpool(%x) : {t}[2,3,1]
}""",
    "pools_3d": """graph @g(%x: {t}[1,2,5,4,3]) -> (%a: {t}[1,2,3,2,2], %b: {t}[1,2,3,2,2]) {
  %a = nn.maxpool(%x) {kernel = [2, 2, 2], strides = [2, 2, 2], pads = [0, 0, 0, 0, 0, 0], dilations = [1, 1, 1], \
ceil_mode = true} : {t}[1,2,3,2,2]
  %b = nn.avgpool(%x) {kernel = [2, 2, 2], strides = [2, 2, 2], pads = [0, 0, 0, 0, 0, 0], dilations = [1, 1, 1], \
ceil_mode = true} : {t}[1,2,3,2,2]
}""",
    "maxpool_indices": """graph @g(%x: {t}[2,3,7,6]) -> (%y: {t}[2,3,4,3], %i: i64[2,3,4,3]) {
  %y, %i = nn.maxpool_indices(%x) {kernel = [3, 2], strides = [2, 2], pads = [1, 0, 1, 0], dilations = [1, 1], \
storage_order = 1} : {t}[2,3,4,3], i64[2,3,4,3]
}""",
    "conv_transpose": """graph @g(%x: {t}[2,4,4,3]) -> (%y: {t}[2,6,9,6]) {
  weight @w : {t}[4,3,2,2]
  weight @b : {t}[6]
  %y = nn.conv_transpose(%x, @w, @b) {strides = [2, 2], pads = [1, 0, 0, 1], dilations = [2, 1], \
output_padding = [1, 1], group = 2} : {t}[2,6,9,6]
}""",
    "conv_transpose_1d_negative_pad": """graph @g(%x: {t}[2,3,5]) -> (%y: {t}[2,2,13]) {
  weight @w : {t}[3,2,3]
  %y = nn.conv_transpose(%x, @w) {strides = [2], pads = [-1, -1], dilations = [1], output_padding = [0]} \
: {t}[2,2,13]
}""",
    "resize": """graph @g(%x: {t}[2,3,4,5]) -> (%a: {t}[2,3,8,7], %b: {t}[2,3,6,2], %c: {t}[2,3,3,9]) {
  %a = nn.resize(%x) {sizes = [2, 3, 8, 7], scales = [1.0, 1.0, 2.0, 1.4], mode = linear} : {t}[2,3,8,7]
  %b = nn.resize(%x) {sizes = [2, 3, 6, 2], scales = [1.0, 1.0, 1.5, 0.5], coord_mode = asymmetric, \
nearest_mode = ceil} : {t}[2,3,6,2]
  %c = nn.resize(%x) {sizes = [2, 3, 3, 9], scales = [1.0, 1.0, 0.75, 1.8], mode = cubic, cubic_coeff_a = -0.5, \
exclude_outside = true} : {t}[2,3,3,9]
}""",
    "norms": """graph @g(%x: {t}[2,3,4,5]) -> (%a: {t}[2,3,4,5], %b: {t}[2,3,4,5], %c: {t}[2,3,4,5]) {
  weight @s : {t}[4,5]
  weight @bias : {t}[5]
  weight @cs : {t}[3]
  weight @cb : {t}[3]
  %a = nn.layernorm(%x, @s, @bias) {axis = 2, epsilon = 0.001} : {t}[2,3,4,5]
  %b = nn.instancenorm(%x, @cs, @cb) : {t}[2,3,4,5]
  %c = nn.lrn(%x) {size = 3, alpha = 0.1, beta = 0.5, bias = 2.0} : {t}[2,3,4,5]
}""",
    "groupnorm": """graph @g(%x: {t}[2,4,3,2]) -> (%y: {t}[2,4,3,2]) {
  weight @s : {t}[4]
  weight @b : {t}[4]
  %y = nn.groupnorm(%x, @s, @b) {num_groups = 2, epsilon = 0.001} : {t}[2,4,3,2]
}""",
    "activations": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4], %c: {t}[2,3,4], %d: {t}[2,3,4], \
%e: {t}[2,3,4], %f: {t}[2,3,4], %g: {t}[2,3,4], %h: {t}[2,3,4]) {
  weight @slope : {t}[3,1]
  %a = nn.erf(%x) : {t}[2,3,4]
  %b = nn.gelu(%x) : {t}[2,3,4]
  %c = nn.gelu(%x) {approximate = tanh} : {t}[2,3,4]
  %d = nn.prelu(%x, @slope) : {t}[2,3,4]
  %e = nn.log_softmax(%x) {axis = 1} : {t}[2,3,4]
  %f = nn.hardmax(%x) {axis = 1} : {t}[2,3,4]
  %g = nn.hard_sigmoid(%x) {alpha = 0.3, beta = 0.4} : {t}[2,3,4]
  %h = nn.hard_swish(%x) : {t}[2,3,4]
}""",
    "activations_exp": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4], %c: {t}[2,3,4], %d: {t}[2,3,4], \
%e: {t}[2,3,4], %f: {t}[2,3,4], %g: {t}[2,3,4]) {
  %a = nn.softplus(%x) : {t}[2,3,4]
  %b = nn.softsign(%x) : {t}[2,3,4]
  %c = nn.elu(%x) {alpha = 0.7} : {t}[2,3,4]
  %d = nn.selu(%x) : {t}[2,3,4]
  %e = nn.celu(%x) {alpha = 0.5} : {t}[2,3,4]
  %f = nn.mish(%x) : {t}[2,3,4]
  %g = nn.thresholded_relu(%x) {alpha = 0.3} : {t}[2,3,4]
}""",
    "layernorm_stats": """graph @g(%x: {t}[2,3,4]) -> (%y: {t}[2,3,4], %m: f32[2,1,1], %v: f64[2,1,1]) {
  weight @s : {t}[4]
  %y, %m, %0 = nn.layernorm_stats(%x, @s) {axis = 1} : {t}[2,3,4], f32[2,1,1], f32[2,1,1]
  %1, %2, %v = nn.layernorm_stats(%x, @s) {axis = -2, epsilon = 0.01, stash = f64} : {t}[2,3,4], f64[2,1,1], f64[2,1,1]
}""",
}

"""IR cases of nn.rnn / nn.gru / nn.lstm and snn.ltc for tests/backends/test_torch_lowering.py (interpreter vs
torch lowering, f32 and f64); `{t}` is the float dtype under test."""

LTC_CASES = {
    "rnn_bidirectional": """graph @g(%x: {t}[4,2,3]) -> (%y: {t}[4,2,2,5], %h: {t}[2,2,5]) {
  weight @w : {t}[2,5,3]
  weight @r : {t}[2,5,5]
  weight @b : {t}[2,10]
  %y, %h = nn.rnn(%x, @w, @r, @b) {hidden_size = 5, direction = bidirectional} : {t}[4,2,2,5], {t}[2,2,5]
}""",
    "gru_batch_first_lbr": """graph @g(%x: {t}[2,4,3], %h0: {t}[2,1,4]) -> (%y: {t}[2,4,1,4], %h: {t}[2,1,4]) {
  weight @w : {t}[1,12,3]
  weight @r : {t}[1,12,4]
  weight @b : {t}[1,24]
  %y, %h = nn.gru(%x, @w, @r, @b, %h0) {hidden_size = 4, layout = 1, linear_before_reset = true} \
: {t}[2,4,1,4], {t}[2,1,4]
}""",
    "lstm_reverse_states": """graph @g(%x: {t}[3,2,3], %h0: {t}[1,2,4], %c0: {t}[1,2,4]) -> \
(%y: {t}[3,1,2,4], %h: {t}[1,2,4], %c: {t}[1,2,4]) {
  weight @w : {t}[1,16,3]
  weight @r : {t}[1,16,4]
  weight @b : {t}[1,32]
  weight @p : {t}[1,12]
  %y, %h, %c = nn.lstm(%x, @w, @r, @b, @p, %h0, %c0) {hidden_size = 4, direction = reverse} \
: {t}[3,1,2,4], {t}[1,2,4], {t}[1,2,4]
}""",
    "ltc_layer": """graph @g(%x: {t}[6,2,3]) -> (%s: {t}[6,2,4]) {
  weight @pos_win : {t}[4,3]
  weight @wrec : {t}[4,4]
  weight @b : {t}[4]
  weight @wtau : {t}[4,8]
  weight @btau : {t}[4]
  weight @wrho : {t}[4,8]
  weight @brho : {t}[4]
  %s = snn.ltc(%x, @pos_win, @wrec, @b, @wtau, @btau, @wrho, @brho) : {t}[6,2,4]
}""",
}

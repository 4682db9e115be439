"""Recurrent layers: ONNX RNN/GRU/LSTM reference kernels (`mpc.rnn.kernels`)."""

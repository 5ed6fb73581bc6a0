"""Model serving for the RAMP nodes and training, ROS-free.

Model cards (``model_card``), ONNX Runtime sessions and providers (``onnx_runtime``), image
preprocessing (``preprocess``), input synchronisation (``observation``), model inputs by role
(``inputs``) and hot swap (``hot_swap``). Nothing here imports rclpy; the ROS side of a model node
is ``ramp_models.ros``.
"""

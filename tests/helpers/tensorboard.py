"""Reading back what a run wrote for TensorBoard, with TensorBoard's own reader."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def events(run_dir) -> EventAccumulator:
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0}).Reload()


def session_hparams(run_dir) -> dict:
    """The hyperparameters of the HParams session a run folder starts, as TensorBoard reads them."""
    content = events(run_dir).PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content  # no fixed column list: every run's scalars are columns
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {
        name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for name, value in start.session_start_info.hparams.items()
    }

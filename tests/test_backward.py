"""The backward pass: the loss's gradient at every layer and optimizer steps on a copy (`mnist_ann.backprop`),
POST /backward in this process, and the page's backward pass in headless Chromium."""

import copy
import gc

import pytest
import torch
from torch import nn

from mnist_ann.backprop import learning_steps, look, optimizer_factory
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import MLP
from tests.helpers.browser import SCREENSHOT_DIR, STROKES, Page
from tests.helpers.service import in_process_client, start_server, stop_server
from tests.helpers.synthetic import bar_picture, png_base64

SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}


def picture() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(1, 28, 28).clamp(-1, 1)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"hidden_sizes": []},
        {"hidden_sizes": [32, 16, 8, 4]},
        {"task": "binary"},
        {"task": "regression"},
        {"batch_norm": True},
    ],
    ids=["recipe", "no hidden layer", "four hidden layers", "binary", "regression", "batch norm"],
)
def test_each_layers_gradient_is_the_losss_as_autograd_and_a_finite_difference_give_it(settings):
    torch.manual_seed(0)
    model = MNISTClassifier(**settings)
    for norm in (layer for layer in model.net.layers if isinstance(layer, nn.BatchNorm1d)):
        nn.init.uniform_(norm.running_mean, -0.5, 0.5)  # statistics a trained network would have kept: a ReLU's
        nn.init.uniform_(norm.bias, -0.5, 0.5)  # input is then not its linear part's output
    net, image, target = copy.deepcopy(model.net).eval(), picture(), 3
    seen = look(net, model.task, image, target)
    hidden = seen["hidden"]
    assert len(hidden) == len(model.hparams.hidden_sizes)
    if model.hparams.task == "multiclass":  # cross-entropy's gradient: softmax minus one-hot
        expected = torch.tensor(seen["probabilities"]) - nn.functional.one_hot(torch.tensor(target), 10)
        assert torch.allclose(torch.tensor(seen["output_gradient"]), expected, atol=1e-6)
    for layer in hidden:  # a unit whose ReLU was off passes nothing back
        assert all(gradient == 0 for gradient, off in zip(layer["gradient"], layer["off"], strict=True) if off)

    # A weight of the last hidden layer (of the output layer, without one): dL/dW[i, j] = dL/dz[i] times the
    # layer's input j, against a central finite difference of the loss.
    linear = [layer for layer in net.layers if isinstance(layer, nn.Linear)][max(len(hidden) - 1, 0)]
    errors = hidden[-1]["gradient"] if hidden else seen["output_gradient"]
    inputs = hidden[-2]["activation"] if len(hidden) > 1 else image.flatten().tolist()
    i = max(range(len(errors)), key=lambda index: abs(errors[index]))
    j = max(range(len(inputs)), key=lambda index: abs(inputs[index]))

    def loss_at(shift: float) -> float:  # in float64, by a shift too small to turn any ReLU on or off
        exact = copy.deepcopy(net).double()
        with torch.no_grad():
            exact.layers[list(net.layers).index(linear)].weight[i, j] += shift
            logits = exact(image.double().unsqueeze(0))
        targets = model.task.targets(torch.tensor([target]))
        return model.task.loss(logits, targets.double() if targets.is_floating_point() else targets).item()

    numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
    assert abs(errors[i] * inputs[j] - numeric) < 1e-3 * abs(numeric)
    first = seen["first_weights"][0]  # the first layer's weight gradient: the input scaled by the unit's error
    error = (hidden[0]["gradient"] if hidden else seen["output_gradient"])[first["unit"]]
    assert torch.allclose(torch.tensor(first["gradient"]), error * image[0], atol=1e-6)


def test_a_step_of_sgd_moves_each_weight_by_minus_the_rate_times_its_gradient_and_others_as_torch_steps():
    model, image = MNISTClassifier(), picture()
    factory, name, rate = optimizer_factory(SGD, lr=0.05)
    assert (name, rate) == ("SGD", 0.05)
    _, after, stepped = learning_steps(model, image, 3, factory, steps=1)
    reference = copy.deepcopy(model.net).eval()
    model.task.loss(reference(image.unsqueeze(0)), torch.tensor([3])).backward()
    for before, gradient, now in zip(
        reference.parameters(), (p.grad for p in reference.parameters()), stepped.parameters(), strict=True
    ):
        assert torch.allclose(now, before - 0.05 * gradient, atol=1e-7)
    assert after["moved"][0] > 0

    adam = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001, "betas": [0.8, 0.9], "not_adams": 1}}
    factory, name, rate = optimizer_factory(adam)
    _, _, stepped = learning_steps(model, image, 3, factory, steps=3)
    reference = copy.deepcopy(model.net).eval()
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.001, betas=(0.8, 0.9))
    for _ in range(3):
        optimizer.zero_grad()
        model.task.loss(reference(image.unsqueeze(0)), torch.tensor([3])).backward()
        optimizer.step()
    assert all(torch.allclose(a, b) for a, b in zip(stepped.parameters(), reference.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"is not one of torch\.optim's"):
        optimizer_factory({"class_path": "os.system"})


@pytest.fixture(scope="module")
def client(trained_checkpoint, tmp_path_factory):
    with in_process_client(trained_checkpoint, tmp_path_factory.mktemp("backward")) as client:
        yield client


def test_steps_never_change_the_served_model_its_file_or_its_answers(client, trained_checkpoint):
    image = png_base64(bar_picture())
    saved, answered = trained_checkpoint.read_bytes(), client.post("/predict", json={"image": image}).json()
    first = client.post("/backward", json={"image": image}).json()
    assert first["target"] == first["answer"] == answered["class"] and first["after"] is None
    assert first["optimizer"] == "SGD" and first["lr"] == 0.01  # the recipe's, for a checkpoint outside a run
    target = (answered["class"] + 1) % 10
    unstepped = client.post("/backward", json={"image": image, "target": target}).json()["before"]
    gc.collect()
    networks = sum(isinstance(held, MLP) for held in gc.get_objects())
    for steps in range(1, 21):  # each from the model as saved
        stepped = client.post("/backward", json={"image": image, "target": target, "steps": steps, "lr": 0.05}).json()
        assert stepped["before"] == unstepped
    assert stepped["after"]["class"] == target and stepped["after"]["loss"] < stepped["before"]["loss"]
    gc.collect()
    assert sum(isinstance(held, MLP) for held in gc.get_objects()) <= networks  # no copy outlives its request
    assert trained_checkpoint.read_bytes() == saved
    assert client.post("/predict", json={"image": image}).json()["probabilities"] == answered["probabilities"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"target": 10}, 422, "target: Input should be less than or equal to 9"),
        ({"lr": 0}, 422, "lr: Input should be greater than 0"),
        ({"steps": 101}, 422, "steps: Input should be less than or equal to 100"),
        ({"model": "../secret"}, 422, "model: String should match pattern"),
        ({"model": "version_9"}, 404, "model: version_9 has no best.ckpt (yet)"),
        ({"image": "not base64!"}, 400, "image: not valid base64"),
    ],
)
def test_a_bad_backward_request_is_refused_with_one_message(client, body, status, error):
    answer = client.post("/backward", json={"image": png_base64(bar_picture()), **body})
    assert answer.status_code == status and answer.json()["error"].startswith(error)


def test_beside_too_few_images_for_the_recipes_split_a_step_is_answered_without_a_validation_score(
    trained_checkpoint, synthetic_data_dir, tmp_path
):
    """The served checkpoint belongs to no run: its validation images would be the recipe's 5,000, of 1,200 here."""
    with in_process_client(trained_checkpoint, tmp_path, data_dir=synthetic_data_dir) as client:
        answer = client.post("/backward", json={"image": png_base64(bar_picture()), "steps": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["before"]["val_acc"] is None and answer.json()["after"]["val_acc"] is None


@pytest.mark.slow
def test_the_page_steps_a_drawing_toward_another_digit_and_resets(trained_checkpoint, browser, tmp_path):
    process, base = start_server(trained_checkpoint, cwd=tmp_path)
    try:
        page = Page(browser, f"{base}/")
        for width, height, name in ((1400, 1000, "backward"), (390, 844, "backward-phone")):
            browser.set_window_size(width, height)
            page.find("clear").click()
            answers = int(page.find_body().get_attribute("data-answers"))
            page.draw(STROKES["3"])
            page.settled(answers + 1)
            page.wait_for(lambda: page.find_body().get_attribute("data-steps") == "0")
            answer = page.find_body().get_attribute("data-learned")
            target = str((int(answer) + 1) % 10)
            page.driver.find_element(page.by.CSS_SELECTOR, f"#learn-target option[value='{target}']").click()
            page.wait_for(lambda target=target: f"p({target})" in page.find("loss-line").text)
            for step in range(1, 31):
                page.find("step").click()
                page.wait_for(lambda step=step: page.find_body().get_attribute("data-steps") == str(step))
                if page.find_body().get_attribute("data-learned") == target:
                    break
            assert page.find_body().get_attribute("data-learned") == target, "30 steps did not teach it"
            assert page.find("answer").text.split("\n")[0] == answer  # the answering model is the saved one
            page.driver.execute_script("document.getElementById('backward').scrollIntoView()")
            browser.save_screenshot(str(SCREENSHOT_DIR / f"mnist-ann-{name}.png"))
            page.find("reset").click()
            page.wait_for(lambda: page.find_body().get_attribute("data-steps") == "0")
            assert page.find_body().get_attribute("data-learned") == answer
    finally:
        stop_server(process)

"""The learning verdict's words say what decided it: a run whose loss fell but whose accuracy stays at chance is
not said to have its loss at chance (compare sigmoid+bn --max-steps 12 once printed "the loss stays at chance
(1.29; chance is 2.30), accuracy 10%")."""

from vgtui.core.diagnosis import explain_learning, judge_learning, judge_run


def test_accuracy_at_chance_with_a_fallen_loss_is_said_as_such():
    losses = [2.31, 1.9, 1.5, 1.31, 1.29]
    assert judge_learning(losses, accuracy=0.10) == "stalled"
    words = explain_learning("stalled", losses, accuracy=0.10, flow="healthy")
    assert "the accuracy stays at chance (10%; chance is 10%) although the loss fell to 1.29" in words
    assert "the loss stays at chance" not in words


def test_a_loss_at_chance_is_said_as_before():
    losses = [2.31, 2.30, 2.31, 2.30]
    assert judge_learning(losses, accuracy=0.10) == "stalled"
    assert "the loss stays at chance (2.3; chance is 2.30), accuracy 10%" in explain_learning(
        "stalled", losses, accuracy=0.10)
    assert judge_run(["fc1"], [], losses, accuracy=0.1).learning == "stalled"

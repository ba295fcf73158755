"""Which arm an end user is in: by weight, the same every time, the key's experiment before its team's."""

from __future__ import annotations

from collections import Counter

from routing.config.experiments import ArmSnapshot, ExperimentSnapshot, arm_of, experiment_for

ARMS = (ArmSnapshot(1, "A", policy_id=10, weight=1), ArmSnapshot(2, "B", policy_id=20, weight=3))
USERS = [f"user-{n}" for n in range(4000)]


def test_users_split_by_the_weights() -> None:
    experiment = ExperimentSnapshot(id=7, api_key_id=1, team="", arms=ARMS)

    split = Counter(arm_of(experiment, user).name for user in USERS)

    # A fair split of 4000 users at 1:3 is within 0.03 of 0.75 far beyond four standard deviations.
    assert abs(split["B"] / len(USERS) - 0.75) < 0.03


def test_an_end_user_always_lands_in_the_same_arm() -> None:
    experiment = ExperimentSnapshot(id=7, api_key_id=1, team="", arms=ARMS)

    assert all(arm_of(experiment, user) == arm_of(experiment, user) for user in USERS[:200])


def test_another_experiment_splits_the_same_users_afresh() -> None:
    first = ExperimentSnapshot(id=7, api_key_id=1, team="", arms=ARMS)
    second = ExperimentSnapshot(id=8, api_key_id=1, team="", arms=ARMS)

    assert [arm_of(first, u).name for u in USERS[:200]] != [arm_of(second, u).name for u in USERS[:200]]


def test_a_keys_own_experiment_wins_over_its_teams() -> None:
    team_wide = ExperimentSnapshot(id=1, api_key_id=None, team="growth", arms=ARMS)
    own = ExperimentSnapshot(id=2, api_key_id=5, team="", arms=ARMS)

    assert experiment_for([team_wide, own], key_id=5, team="growth") is own
    assert experiment_for([team_wide, own], key_id=6, team="growth") is team_wide
    assert experiment_for([team_wide, own], key_id=6, team="search") is None

"""The economy's numbers: prices per item from supply and demand, pure and deterministic.

Supply and demand are indices around 100 (normal). Each cycle they recover part of the way back
to 100, then move with what happened: NPC merchants' sales raise demand, events cut or add supply
(a monster invasion on a map cuts the herbs gathered there), a delivered fetch quest adds supply.
The target price is the base price times (demand / supply) ** elasticity, pulled toward what
players ask in their vending shops and lifted by a bounded inflation; the price moves toward it
by at most a step per cycle and always stays within the game rules' shop price limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiworld.models import GameEventKind, NpcProfile
from aiworld.npc.rules import DEFAULT_LIMITS
from aiworld.world.cycle import InboxEntry, WorldChange

NORMAL = 100
MIN_INDEX, MAX_INDEX = 20, 300
RECOVERY = 0.35  # share of the way back to normal each cycle
DEMAND_PER_UNIT_SOLD = 2
ELASTICITY = 0.6
PLAYER_PRICE_WEIGHT = 0.3
MAX_STEP = 0.25  # a price moves at most a quarter per cycle
INFLATION_BOUNDS = (-2.0, 5.0)
INFLATION_MEMORY = 0.8
SHORTAGE_BELOW = 70  # supply index under which an item is short (quests read it)
NOTABLE_CHANGE = 0.05  # smaller price moves are not history
# The herbs a monster invasion keeps gatherers from (Red, Yellow, White, Blue, Green Herb).
HERBS = frozenset({507, 508, 509, 510, 511})
INVASION_SUPPLY_CUT = 60


@dataclass
class EconomyStep:
    fields: dict[str, str]
    changes: list[WorldChange] = field(default_factory=list)
    # (merchant npc id, item id, new price): the shops to reprice.
    reprices: list[tuple[str, int, int]] = field(default_factory=list)


def _int(state: dict[str, str], key: str, default: int) -> int:
    try:
        return int(float(state[key]))
    except (KeyError, ValueError):
        return default


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def base_prices(merchants: list[NpcProfile]) -> dict[int, int]:
    """An item's base price: the lowest base any merchant sells it at."""
    prices: dict[int, int] = {}
    for merchant in merchants:
        for item in merchant.shop:
            prices[item.item_id] = min(prices.get(item.item_id, item.base_price), item.base_price)
    return prices


def shocks_from(inbox: list[InboxEntry]) -> tuple[dict[int, int], dict[int, int], dict[int, list[str]], int]:
    """(supply change, units sold, reasons, units traded) per item from the routed game events."""
    supply: dict[int, int] = {}
    sold: dict[int, int] = {}
    reasons: dict[int, list[str]] = {}
    traded = 0
    for entry in inbox:
        event, facts = entry.event, entry.event.facts or {}
        if event.kind is GameEventKind.ACTION_RESULT and event.outcome == "done" and event.item_id and event.amount:
            sold[event.item_id] = sold.get(event.item_id, 0) + event.amount
            traded += event.amount
        elif event.kind is GameEventKind.ITEM_RECEIVED and event.item_id and event.amount:
            supply[event.item_id] = supply.get(event.item_id, 0) + event.amount
            reasons.setdefault(event.item_id, []).append("players brought some in")
        elif event.kind is GameEventKind.WORLD_EVENT:
            if facts.get("event") == "invasion":
                where = str(facts.get("map") or entry.map or "a field")
                for herb in HERBS:
                    supply[herb] = supply.get(herb, 0) - INVASION_SUPPLY_CUT
                    reasons.setdefault(herb, []).append(f"monsters invaded {where}")
            item, change = facts.get("supply_item"), facts.get("supply_change")
            if isinstance(item, int) and isinstance(change, int | float):
                supply[item] = supply.get(item, 0) + int(change)
                reasons.setdefault(item, []).append(str(facts.get("cause") or event.text or "an event")[:80])
            if isinstance(facts.get("sold_item"), int) and isinstance(facts.get("sold_amount"), int):
                sold_item, amount = int(facts["sold_item"]), int(facts["sold_amount"])
                sold[sold_item] = sold.get(sold_item, 0) + amount
                traded += amount
    return supply, sold, reasons, traded


def economy_step(state: dict[str, str], inbox: list[InboxEntry], merchants: list[NpcProfile]) -> EconomyStep:
    bases = base_prices(merchants)
    supply_shock, sold, reasons, traded = shocks_from(inbox)
    inflation = float(state.get("inflation_pct", "0") or 0)
    fields: dict[str, str] = {}
    changes: list[WorldChange] = []
    reprices: list[tuple[str, int, int]] = []
    pressures = []
    for item_id, base in sorted(bases.items()):
        old_supply = _int(state, f"supply:{item_id}", NORMAL)
        old_demand = _int(state, f"demand:{item_id}", NORMAL)
        old_price = _int(state, f"price:{item_id}", base)
        supply = round(
            _clamp(NORMAL + (old_supply - NORMAL) * (1 - RECOVERY) + supply_shock.get(item_id, 0), MIN_INDEX, MAX_INDEX)
        )
        demand = round(
            _clamp(
                NORMAL + (old_demand - NORMAL) * (1 - RECOVERY) + DEMAND_PER_UNIT_SOLD * sold.get(item_id, 0),
                MIN_INDEX,
                MAX_INDEX,
            )
        )
        pressures.append(demand / supply)
        target = base * (demand / supply) ** ELASTICITY * (1 + inflation / 100)
        if (asked := _int(state, f"price_{item_id}", 0)) > 0:  # players' vending price (bridge)
            target = (1 - PLAYER_PRICE_WEIGHT) * target + PLAYER_PRICE_WEIGHT * asked
        floor = max(1, round(base * DEFAULT_LIMITS.price_floor_factor))
        ceiling = round(base * DEFAULT_LIMITS.price_ceiling_factor)
        stepped = _clamp(target, old_price * (1 - MAX_STEP), old_price * (1 + MAX_STEP))
        price = round(_clamp(stepped, floor, ceiling))
        fields.update(
            {
                f"price:{item_id}": str(price),
                f"base:{item_id}": str(base),
                f"supply:{item_id}": str(supply),
                f"demand:{item_id}": str(demand),
            }
        )
        if abs(price - old_price) >= max(1, NOTABLE_CHANGE * old_price):
            rising = price > old_price
            cause = "; ".join(dict.fromkeys(reasons.get(item_id, [])))
            if not cause:
                cause = "supply is short" if supply < demand else "plenty on the market"
                if supply == demand == NORMAL or abs(supply - demand) < 5:
                    cause = "the market settled back"
            move = abs(price - old_price) / old_price
            changes.append(
                WorldChange(
                    what=f"price:{item_id}",
                    before=str(old_price),
                    after=str(price),
                    why=f"{'up' if rising else 'down'} {move:.0%}: {cause} (supply {supply}, demand {demand})"[:300],
                    importance=6 if move >= 0.15 else 4,
                    scope={"kind": "world"},
                    facts={
                        "item_id": item_id,
                        "price_before": old_price,
                        "price": price,
                        "price_change_pct": round((price - old_price) * 100 / old_price),
                        "supply": supply,
                        "demand": demand,
                        "cause": cause[:80],
                    },
                )
            )
            reprices.extend(
                (merchant.npc_id, item_id, price)
                for merchant in merchants
                if any(entry.item_id == item_id for entry in merchant.shop)
            )
    if pressures:
        pressure = sum(pressures) / len(pressures) - 1
        new_inflation = round(
            _clamp(INFLATION_MEMORY * inflation + 2 * pressure, *INFLATION_BOUNDS),
            2,
        )
    else:
        new_inflation = inflation
    fields["inflation_pct"] = f"{new_inflation:.2f}"
    fields["trade_volume"] = str(traded)
    return EconomyStep(fields=fields, changes=changes, reprices=sorted(reprices))


def shortages(state: dict[str, str]) -> list[tuple[int, int]]:
    """(item id, supply index) of every item short now, shortest first."""
    short = []
    for key, value in state.items():
        if key.startswith("supply:"):
            try:
                item_id, supply = int(key.split(":", 1)[1]), int(float(value))
            except ValueError:
                continue
            if supply < SHORTAGE_BELOW:
                short.append((item_id, supply))
    return sorted(short, key=lambda pair: (pair[1], pair[0]))

from winnow.core.grouping import UnionFind


def test_union_find_groups_transitively_and_orders_by_smallest():
    sets = UnionFind()
    sets.union_all([(5, 3), (3, 9), (7, 8), (1, 1)])
    assert [sorted(g) for g in sets.groups()] == [[1], [3, 5, 9], [7, 8]]
    assert sets.find(9) == 3 and sets.find(8) == 7

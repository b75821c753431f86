"""Fund-loss drills (資損攻防): see `piaohao.drills.scenarios`."""

"""The project's one split function."""
from __future__ import annotations

import pytest

from builders.format.identity import inchikey_of_smiles
from builders.format.splits import assign_split, split_key, split_unit_interval


def test_split_is_a_pure_function_of_the_connectivity_block():
    ethanol = inchikey_of_smiles("CCO")
    assert ethanol == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"  # the standard InChIKey of ethanol
    # stereoisomers share the connectivity block and therefore the split
    l_ala, d_ala = inchikey_of_smiles("C[C@@H](N)C(=O)O"), inchikey_of_smiles("C[C@H](N)C(=O)O")
    assert l_ala == d_ala  # stereo removed from identity
    assert split_key("QNAYBMKLOCPYGJ-REOHCLBHSA-N") == split_key("QNAYBMKLOCPYGJ-UWTATZPHSA-N")
    assert assign_split("QNAYBMKLOCPYGJ-REOHCLBHSA-N") == assign_split("QNAYBMKLOCPYGJ-UWTATZPHSA-N")


def test_split_fractions_are_80_10_10_over_many_identities():
    import hashlib

    # synthetic, well-formed keys: 14 uppercase letters, '-', 8 letters + 'SA', '-N'
    keys = []
    for i in range(30000):
        h = hashlib.sha1(str(i).encode()).hexdigest().upper()
        block = "".join(chr(65 + int(c, 16) % 26) for c in h[:14])
        keys.append(f"{block}-UHFFFAOYSA-N")
    counts = {"train": 0, "valid": 0, "test": 0}
    for k in keys:
        counts[assign_split(k)] += 1
    assert abs(counts["train"] / len(keys) - 0.8) < 0.01
    assert abs(counts["valid"] / len(keys) - 0.1) < 0.01
    assert abs(counts["test"] / len(keys) - 0.1) < 0.01
    assert all(0.0 <= split_unit_interval(k) < 1.0 for k in keys[:100])


@pytest.mark.parametrize("bad", ["", "CCO", "LFQSCWFLJHTTHZ_UHFFFAOYSA_N", None, "x" * 27])
def test_bad_identity_is_rejected_with_its_value(bad):
    with pytest.raises(ValueError, match="not an InChIKey"):
        assign_split(bad)


def test_density_and_conformer_keys_of_one_chiral_molecule_share_block_and_split():
    """The density releases keep the input's stereo in meta.inchikey, random-conformers and
    p1-crystals strip it; the split reads only the connectivity block, so a molecule lands in
    the same split in every release."""
    pytest.importorskip("rdkit")
    from rdkit import Chem

    from builders.format.identity import input_inchikey

    for smiles in ("C[C@@H](N)C(=O)O", "C/C=C/C", "O[C@H]1CC[C@@H](O)CC1"):
        with_stereo = input_inchikey(Chem.AddHs(Chem.MolFromSmiles(smiles)))
        without = inchikey_of_smiles(smiles)
        assert with_stereo != without and with_stereo[:14] == without[:14]
        assert assign_split(with_stereo) == assign_split(without)

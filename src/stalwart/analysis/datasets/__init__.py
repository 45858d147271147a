"""ADaM-like analysis datasets (ADSL, ADLB, ADTTE, ADAE) derived from the store, one module each."""

// PeerhostRing
